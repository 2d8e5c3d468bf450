// graphs: replays decode steps from backend graphs (CUDA graphs), one per step shape, so that
// a decode step costs one launch instead of ~15 per layer (at batch 1 launch overhead, not
// bandwidth, decides the speed). Talks only to the optional graph ops of kernels/backend.h.
//
// A shape is (n_seqs, max_blocks): the forward pass pads decode batches to a bucket of
// sequences (1, 2, 4, ... 256) and of block-table width (powers of two), so a few graphs
// serve every step. The first step of a shape runs directly (it sizes the backend's scratch
// memory), the second is captured and launched, the later ones only restage their metadata
// (tokens, positions, slots, block tables) and replay. A graph that went stale (the backend's
// scratch moved) is captured again; a shape whose capture failed runs directly from then on.
// At most max_graphs shapes (and so graphs) are kept; the least recently used goes first.
// Not thread-safe: it belongs to the forward context (engine thread).
//
//   hl_graphs *gs = hl_graphs_create(be, 64);          // NULL: the backend has no graphs
//   enum hl_graphs_mode m = hl_graphs_begin(gs, n_seqs, max_blocks);
//   ... every op of the step ...
//   bool ran; hl_graphs_end(gs, &ran, &err);          // !ran: run the ops again directly
#pragma once

#include "common/hl.h"
#include "kernels/backend.h"

typedef struct hl_graphs hl_graphs;

enum hl_graphs_mode {
    HL_GRAPHS_EAGER = 0,   // ops run as they are called
    HL_GRAPHS_CAPTURE = 1, // ops are recorded into a new graph; hl_graphs_end launches it
    HL_GRAPHS_REPLAY = 2,  // ops only restage metadata; hl_graphs_end launches the graph
};

typedef struct hl_graphs_stats {
    uint64_t eager;     // steps of a graph shape run directly (first sight, or failed shapes)
    uint64_t captures;  // graphs captured (recaptures of stale graphs included)
    uint64_t replays;   // steps replayed from a graph
    uint64_t stale;     // graphs dropped because the backend's scratch memory moved
    uint64_t failed;    // captures that failed (their shape then always runs directly)
    int n_graphs;       // graphs held now
} hl_graphs_stats;

// A graph cache for be (borrowed, must outlive it) remembering at most max_graphs (>= 1) shapes.
// NULL when be has no graph ops (not an error: steps then simply run directly).
hl_graphs *hl_graphs_create(hl_backend *be, int max_graphs);
void hl_graphs_free(hl_graphs *gs); // frees every graph; accepts NULL

// Starts a step of the given shape and says how its ops will be taken. Never fails: when a
// restage or a capture cannot start, the step runs directly (HL_GRAPHS_EAGER).
enum hl_graphs_mode hl_graphs_begin(hl_graphs *gs, int n_seqs, int max_blocks);

// Ends the step begun by hl_graphs_begin. CAPTURE: ends the capture and launches the graph;
// REPLAY: launches it; EAGER: nothing. *ran is false when the step's ops did not run (a
// failed capture: call them again directly); then HL_OK. HL_ERR_DEVICE when a launch fails.
int hl_graphs_end(hl_graphs *gs, bool *ran, hl_error *err);

void hl_graphs_get_stats(const hl_graphs *gs, hl_graphs_stats *out);
