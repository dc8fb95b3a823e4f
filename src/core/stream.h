/* stream.h: a model's weights under a memory budget. As many whole units (a layer's tensors, or
 * the head: output norm and output matrix) as fit stay resident, read once into memory of their
 * own; the others are read from the file for every forward pass, in file order, by a reader
 * thread that runs ahead of the computation into a small ring of slot buffers. A pass then costs
 * about max(I/O, compute) rather than their sum, and between passes the reader keeps filling the
 * free slots with the next pass's first units (LLMCad's setting: one weight pass verifies a
 * whole token tree, so speculation pays most here).
 *
 * Reads are large sequential pread(2)s with O_DIRECT (the page cache neither holds the streamed
 * bytes nor makes them fast; where the filesystem refuses O_DIRECT, buffered reads whose pages
 * are dropped again with posix_fadvise). Measured on this project's VM: one thread issuing 4 MiB
 * reads reaches the disk's sequential rate (2.4 GB/s, fio psync QD1) and io_uring at queue depth
 * 4 does not beat it (2.2 GB/s), so there is no io_uring path.
 *
 * The unit views keep the model's own structs (ar_layer, ar_tensor) with their data pointers
 * moved into the unit's buffer, so the forward pass and the kernels read the same bytes as from
 * the mapping: results are bit-identical to the mapped model. Token embedding rows (unless the
 * embedding is the head) are read one row at a time with pread into a small direct-mapped cache
 * of rows (part of the budget), so they never grow the process's resident set: a small read
 * queued behind the reader's large ones waits for them, and a drafter asks for the same rows
 * again and again. The file is untrusted even after opening: a read error or a file shortened since
 * it was opened ends the pass with a one-line error, and the stream stays failed. */
#ifndef ARBOR_STREAM_H
#define ARBOR_STREAM_H

#include "model.h"

typedef struct ar_stream ar_stream;

typedef struct ar_stream_params {
    uint64_t budget;      /* bytes for resident units plus slot buffers */
    int32_t n_slots;      /* slot buffers for streamed units (>= 2; 0: the default, 2) */
    int32_t min_resident; /* layers 0 .. min_resident - 1 and the head must be resident
                             (self-drafting runs them outside the verifier's passes) */
    bool direct;          /* O_DIRECT reads (default true; false: buffered + dropped) */
} ar_stream_params;

ar_stream_params ar_stream_default_params(void);

/* What a budget gives for a model (ar_stream_plan; also kept by a stream). */
typedef struct ar_stream_plan {
    int32_t n_units;    /* layers + 1 (the head is unit n_layer) */
    int32_t n_resident; /* resident units */
    int32_t n_resident_layers;
    int32_t prefix_layers; /* of those, layers [0, prefix_layers) (a self-drafter's); the others
                              are spread evenly over the later layers */
    bool head_resident;
    int32_t n_slots;          /* 0 when everything is resident */
    uint64_t resident_bytes;  /* memory of the resident copies */
    uint64_t slot_bytes;      /* memory of all slot buffers */
    uint64_t streamed_bytes;  /* bytes read from the file per forward pass */
    uint64_t largest_unit;    /* buffer bytes of the largest unit */
    int32_t row_cache_rows;   /* embedding rows kept, read from the file (fewer when tight) */
    uint64_t row_cache_bytes; /* their memory (part of the budget) */
    uint64_t min_budget;      /* the smallest budget that streams: 2 slots of the largest unit */
    uint64_t needed_all;      /* the budget at which everything is resident */
} ar_stream_plan;

/* Chooses what stays resident under p->budget: the head and as many layers as leave room for
 * the slots (a self-drafter's first layers, the others spread over the model). AR_ERR_NOMEM with the numbers when the budget cannot hold two slots of the
 * largest unit (plus the units that must be resident). */
ar_status ar_stream_plan_for(const ar_model *m, const ar_stream_params *p, ar_stream_plan *out);
/* Whether the plan keeps layer l resident. */
bool ar_stream_plan_layer_resident(const ar_stream_plan *p, int32_t l);

/* Reads the resident units, allocates the slots and starts the reader thread (none when all is
 * resident). The model must outlive the stream. */
ar_status ar_stream_create(const ar_model *m, const ar_stream_params *p, ar_stream **out);
void ar_stream_free(ar_stream *s);
const ar_stream_plan *ar_stream_get_plan(const ar_stream *s);

/* ---- the forward pass ----
 * A verifier pass takes every unit in order: layer 0 .. n_layer - 1, then the head, each
 * between _begin and _end. A streamed unit's _begin waits until the reader has it in a slot;
 * _end gives the slot back. Resident units may also be taken outside that order, from any
 * thread (a self-drafter's passes): their views never change. */
ar_status ar_stream_layer_begin(ar_stream *s, int32_t l, const ar_layer **out);
void ar_stream_layer_end(ar_stream *s, int32_t l);
/* The head: *norm is the output norm weight, *out the output matrix. */
ar_status ar_stream_head_begin(ar_stream *s, const float **norm, const ar_tensor **out);
void ar_stream_head_end(ar_stream *s);
/* Token embedding row of `token` as floats (n_embd), read from the file unless resident.
 * `scratch` holds at least one raw row (tok_embd.nb1 bytes, rounded up to 4096 + 4096). */
ar_status ar_stream_embed(ar_stream *s, int32_t token, void *scratch, float *out);
size_t ar_stream_embed_scratch_bytes(const ar_model *m);
/* Starts reading the rows of those tokens not in the row cache, all at once, for the
 * ar_stream_embed calls that follow: one read's latency for the batch instead of one a row. */
void ar_stream_embed_prefetch(ar_stream *s, const int32_t *tokens, int32_t n);

typedef struct ar_stream_stats {
    uint64_t bytes_read; /* from the file by the reader since creation */
    double read_seconds; /* the reader's time inside pread */
    double wait_seconds; /* the passes' time waiting for a unit */
    int64_t units_read;
    int64_t waits; /* unit waits that found the unit not yet read */
} ar_stream_stats;
void ar_stream_get_stats(ar_stream *s, ar_stream_stats *out);

#endif
