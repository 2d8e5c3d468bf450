# halyard — one Makefile, no CMake (STYLE.md). Targets:
#   make            build/halyard (CUDA objects too when nvcc exists; CUDA=0 turns it off)
#   make test       unit suites (Check) + integration tests; SANITIZE=1 for ASan+UBSan
#   make serve      deps + model + build, then serve the default model on 127.0.0.1:8080
#   make deps       Debian packages (apt-get as root, else prints the command)
#   make model      fetch the default model (SmolLM2-135M-Instruct Q4_1) into models/
#   make fuzz       libFuzzer harnesses (clang) for the file parsers
#   make gpu-check  build for the local card, CUDA tests and a benchmark table

SANITIZE ?= 0
# CUDA: on by default when nvcc is on PATH; a sanitizer build skips it because ASan and
# the CUDA runtime disagree about the shadow gap and no CUDA test runs without a GPU.
NVCC ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
ifneq ($(SANITIZE),0)
CUDA ?= 0
else ifneq ($(NVCC),)
CUDA ?= 1
else
CUDA ?= 0
endif
CUDA_ARCHS ?= 80 86 89 90

ifeq ($(SANITIZE),1)
BUILD ?= build/san
else ifeq ($(SANITIZE),thread)
BUILD ?= build/tsan
else
BUILD ?= build
endif

CC ?= gcc
PKGS := libpcre2-8 libmicrohttpd libcjson libcurl
# -std=c11 plus POSIX for mmap/clock_gettime; warnings are errors so they never pile up.
WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unused-parameter
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE $(WARN) -MMD -MP -I. -g
ifeq ($(SANITIZE),1)
# -O1 keeps sanitizer runs fast enough for CI; frame pointers give readable stacks.
OPT := -O1 -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
else ifeq ($(SANITIZE),thread)
# ThreadSanitizer for the engine API (submit/cancel/read from many threads): `make tsan`.
OPT := -O1 -fsanitize=thread -fno-omit-frame-pointer
else
# -O2 and the host's ISA baseline only: wider ISAs are chosen at run time (kernels/cpu dispatch).
OPT := -O2
endif
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS := $(CFLAGS_BASE) $(OPT) $(PKG_CFLAGS) $(EXTRA_CFLAGS)
LDFLAGS := $(OPT) $(EXTRA_LDFLAGS)
LIBS := $(PKG_LIBS) -lm -lpthread

LIB_DIRS := common engine kernels kernels/cpu tokenizer rag server
LIB_SRC := $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.c))
TOOL_SRC := $(wildcard tools/*.c)
TEST_SRC := $(wildcard tests/unit/*.c)

ifeq ($(CUDA),1)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CU_SRC := $(wildcard kernels/cuda/*.cu)
CU_OBJ := $(CU_SRC:%.cu=$(BUILD)/%.o)
LIB_SRC += $(wildcard kernels/cuda/*_host.c)
CFLAGS += -DHL_CUDA=1 -I$(CUDA_HOME)/include -DHL_CUDA_LIBDIR='"$(CUDA_HOME)/lib64"'
# nvcc objects may reference the C++ runtime (launch stubs); the link driver is cc. cuBLAS is
# not linked: kernels/cuda/cublas_host.c loads it when a CUDA backend starts (it costs ~215 MB
# of RSS at every start otherwise, CPU-only runs included).
LIBS += -L$(CUDA_HOME)/lib64 -lcudart -lstdc++ -Wl,-rpath,$(CUDA_HOME)/lib64
# One cubin per listed arch plus PTX of the newest, so later cards JIT from PTX.
NV_LAST := $(lastword $(CUDA_ARCHS))
NV_GENCODE := $(foreach a,$(CUDA_ARCHS),-gencode arch=compute_$(a),code=sm_$(a)) \
              -gencode arch=compute_$(NV_LAST),code=compute_$(NV_LAST)
NVFLAGS := -O3 -std=c++17 -I. $(NV_GENCODE) -Xcompiler -Wall,-Werror -Werror all-warnings \
           -lineinfo -MMD -MP
else
CU_OBJ :=
LIB_SRC += kernels/cuda/nocuda.c
endif

LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o) $(CU_OBJ)
TOOL_OBJ := $(TOOL_SRC:%.c=$(BUILD)/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o) $(BUILD)/tests/unit_main.o

.PHONY: all test unit integration deps pydeps model serve fuzz gpu-check clean check-deps tsan
all: $(BUILD)/halyard

$(BUILD)/libhalyard.a: $(LIB_OBJ)
	@mkdir -p $(@D)
	ar rcs $@ $^

$(BUILD)/halyard: $(TOOL_OBJ) $(BUILD)/libhalyard.a
	$(CC) $(LDFLAGS) -o $@ $(TOOL_OBJ) $(BUILD)/libhalyard.a $(LIBS)

# Kernels for wider ISAs live in their own files, compiled with that ISA only; the CPU
# backend picks one at run time (cpuid), so the binary still runs on older x86-64.
$(BUILD)/%_avx2.o: ISA_FLAGS = -mavx2 -mfma -mf16c
$(BUILD)/%_avx512.o: ISA_FLAGS = -mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512dq
$(BUILD)/%_vnni.o: ISA_FLAGS = -mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(ISA_FLAGS) -c -o $@ $<

$(BUILD)/%.o: %.cu
	@mkdir -p $(@D)
	$(NVCC) $(NVFLAGS) -c -o $@ $<

# The unit runner's main() is generated from the suites that exist, so adding
# tests/unit/test_x.c with `Suite *x_suite(void)` is all a new module needs.
$(BUILD)/tests/unit_main.c: $(TEST_SRC) tests/gen_unit_main.sh
	@mkdir -p $(@D)
	sh tests/gen_unit_main.sh $(TEST_SRC) > $@

$(BUILD)/tests/unit_main.o: $(BUILD)/tests/unit_main.c
	$(CC) $(CFLAGS) $(shell pkg-config --cflags check) -c -o $@ $<

$(BUILD)/tests/unit/%.o: tests/unit/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(shell pkg-config --cflags check) -c -o $@ $<

$(BUILD)/test_unit: $(TEST_OBJ) $(BUILD)/libhalyard.a
	$(CC) $(LDFLAGS) -o $@ $(TEST_OBJ) $(BUILD)/libhalyard.a $(LIBS) $(shell pkg-config --libs check)

# ---- setup ----
check-deps:
	@sh tools/deps.sh check || $(MAKE) --no-print-directory deps

deps:
	@sh tools/deps.sh install

pydeps:
	@sh tools/deps.sh python

model:
	@sh tools/fetch_model.sh models

serve: check-deps model
	@$(MAKE) --no-print-directory all
	$(BUILD)/halyard serve -m models/SmolLM2-135M-Instruct.Q4_1.gguf --host 127.0.0.1 --port 8080

# ---- tests ----
test: check-deps
	@$(MAKE) --no-print-directory $(BUILD)/halyard $(BUILD)/test_unit
	@$(MAKE) --no-print-directory pydeps model
	HALYARD_BIN=$(BUILD)/halyard ./$(BUILD)/test_unit
	HALYARD_BIN=$(BUILD)/halyard SANITIZE=$(SANITIZE) sh tests/integration/run.sh

unit: $(BUILD)/test_unit
	./$(BUILD)/test_unit

# The thread-safety suites (engine API, scheduler, KV cache) under ThreadSanitizer.
tsan:
	@$(MAKE) --no-print-directory SANITIZE=thread build/tsan/test_unit
	CK_RUN_SUITE=engine HALYARD_STRESS_REQUESTS=$${HALYARD_STRESS_REQUESTS:-60} TSAN_OPTIONS=halt_on_error=1 ./build/tsan/test_unit
	CK_RUN_SUITE=sched TSAN_OPTIONS=halt_on_error=1 ./build/tsan/test_unit
	CK_RUN_SUITE=kv_cache TSAN_OPTIONS=halt_on_error=1 ./build/tsan/test_unit
	CK_RUN_SUITE=embed TSAN_OPTIONS=halt_on_error=1 ./build/tsan/test_unit

fuzz:
	@sh tests/fuzz/build.sh

gpu-check:
	@sh tools/gpu_check.sh

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(TOOL_OBJ:.o=.d) $(TEST_OBJ:.o=.d)
