// graphs: the per-shape graph cache of decode steps (see graphs.h).
#include "engine/graphs.h"

#include <stdlib.h>

// One step shape: unseen, seen once (eager), captured (graph) or failed.
typedef struct entry {
    int n_seqs, max_blocks;
    hl_backend_graph *graph; // owned; NULL until captured
    bool failed;             // its capture failed: always eager
    uint64_t last_used;      // step counter, for LRU eviction
} entry;

struct hl_graphs {
    hl_backend *be;          // borrowed
    entry *e;                // (max_graphs) shapes seen, with or without a graph
    int n, max;
    uint64_t clock;
    entry *cur;              // the shape of the step between begin and end, or NULL
    enum hl_graphs_mode mode;
    hl_graphs_stats stats;
};

hl_graphs *hl_graphs_create(hl_backend *be, int max_graphs) {
    if (!hl_backend_has_graphs(be) || max_graphs < 1) return NULL;
    hl_graphs *gs = hl_xcalloc(1, sizeof(*gs));
    gs->be = be;
    gs->max = max_graphs;
    gs->e = hl_xcalloc((size_t)max_graphs, sizeof(entry));
    return gs;
}

void hl_graphs_free(hl_graphs *gs) {
    if (!gs) return;
    for (int i = 0; i < gs->n; i++) gs->be->ops->graph_free(gs->be, gs->e[i].graph);
    free(gs->e);
    free(gs);
}

static void drop_graph(hl_graphs *gs, entry *en) {
    if (!en->graph) return;
    gs->be->ops->graph_free(gs->be, en->graph);
    en->graph = NULL;
    gs->stats.n_graphs--;
}

// The entry of a shape; a new one (evicting the least recently used when full) if unseen.
static entry *find_or_add(hl_graphs *gs, int n_seqs, int max_blocks, bool *is_new) {
    *is_new = false;
    for (int i = 0; i < gs->n; i++) {
        if (gs->e[i].n_seqs == n_seqs && gs->e[i].max_blocks == max_blocks) return &gs->e[i];
    }
    *is_new = true;
    if (gs->n < gs->max) {
        entry *en = &gs->e[gs->n++];
        *en = (entry){.n_seqs = n_seqs, .max_blocks = max_blocks};
        return en;
    }
    entry *en = &gs->e[0]; // full: reuse the least recently used shape's slot
    for (int i = 1; i < gs->n; i++) {
        if (gs->e[i].last_used < en->last_used) en = &gs->e[i];
    }
    drop_graph(gs, en);
    *en = (entry){.n_seqs = n_seqs, .max_blocks = max_blocks};
    return en;
}

static enum hl_graphs_mode start(hl_graphs *gs, entry *en, enum hl_graphs_mode m) {
    gs->cur = en;
    gs->mode = m;
    if (m == HL_GRAPHS_EAGER) gs->stats.eager++;
    return m;
}

enum hl_graphs_mode hl_graphs_begin(hl_graphs *gs, int n_seqs, int max_blocks) {
    HL_ASSERT(!gs->cur);
    bool is_new;
    entry *en = find_or_add(gs, n_seqs, max_blocks, &is_new);
    en->last_used = ++gs->clock;
    if (is_new || en->failed) return start(gs, en, HL_GRAPHS_EAGER);
    hl_backend *be = gs->be;
    hl_error err = {0};
    if (en->graph) {
        if (be->ops->graph_restage(be, en->graph, &err) == HL_OK) return start(gs, en, HL_GRAPHS_REPLAY);
        hl_log(HL_LOG_DEBUG, "graphs: %d seqs x %d blocks: %s; capturing again", n_seqs, max_blocks, err.msg);
        drop_graph(gs, en);
        gs->stats.stale++;
    }
    if (be->ops->graph_begin(be, &err) != HL_OK) {
        hl_log(HL_LOG_WARN, "graphs: cannot capture a step of %d sequences: %s; running it directly", n_seqs,
               err.msg);
        en->failed = true;
        gs->stats.failed++;
        return start(gs, en, HL_GRAPHS_EAGER);
    }
    return start(gs, en, HL_GRAPHS_CAPTURE);
}

int hl_graphs_end(hl_graphs *gs, bool *ran, hl_error *err) {
    HL_ASSERT(gs->cur);
    entry *en = gs->cur;
    hl_backend *be = gs->be;
    gs->cur = NULL;
    *ran = true;
    if (gs->mode == HL_GRAPHS_EAGER) return HL_OK;
    if (gs->mode == HL_GRAPHS_CAPTURE) {
        hl_error cerr = {0};
        en->graph = be->ops->graph_end(be, &cerr);
        if (!en->graph) {
            hl_log(HL_LOG_WARN, "graphs: capture of a step of %d sequences failed: %s; running it directly",
                   en->n_seqs, cerr.msg);
            en->failed = true;
            gs->stats.failed++;
            *ran = false;
            return HL_OK;
        }
        gs->stats.captures++;
        gs->stats.n_graphs++;
    } else {
        gs->stats.replays++;
    }
    int rc = be->ops->graph_launch(be, en->graph, err);
    if (rc != HL_OK) drop_graph(gs, en);
    return rc;
}

void hl_graphs_get_stats(const hl_graphs *gs, hl_graphs_stats *out) { *out = gs->stats; }
