// backend: what every backend shares (see backend.h).
#include "kernels/backend.h"

void hl_backend_free(hl_backend *be) {
    if (be) be->ops->free(be);
}
