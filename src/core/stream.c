/* stream.c: resident units, the slot ring and its reader thread (see stream.h). */
#include "stream.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define IO_ALIGN 4096u /* O_DIRECT: file offsets, lengths and buffers */
#define READ_CHUNK                                                                                 \
    (1u << 20)                    /* bytes per pread: the disk's full sequential rate (stream.h),  \
                                     and a short queue for an embedding row read meanwhile */
#define ROW_CACHE_ROWS 4096       /* embedding rows kept (direct-mapped by token id) */
#define GAP_MAX        (1u << 20) /* a unit's tensors closer than this are read as one extent */

/* A run of a unit's bytes in the file, [off, off + len) aligned to IO_ALIGN, at buf_off in the
 * unit's buffer. */
typedef struct extent {
    uint64_t off, len, buf_off;
} extent;

/* One unit: a layer's tensors, or the head (output norm and matrix). */
typedef struct unit {
    int32_t layer; /* the layer; n_layer for the head */
    extent *ext;
    int n_ext;
    uint64_t bytes; /* buffer bytes (sum of the extents) */
    bool resident;
    uint8_t *copy;  /* resident: the unit's bytes */
    ar_layer view;  /* resident layer: pointers into copy */
    ar_tensor head; /* resident head */
    const float *head_norm;
} unit;

enum { SLOT_FREE = 0, SLOT_READY = 1 };

typedef struct slot {
    uint8_t *buf;
    int state;
    int32_t unit;
    ar_layer view; /* the unit's view over buf once ready */
    ar_tensor head;
    const float *head_norm;
} slot;

struct ar_stream {
    const ar_model *m;
    ar_stream_plan plan;
    unit *units;
    int n_units;
    int fd;      /* the weights (O_DIRECT unless refused) */
    int fd_rows; /* buffered: embedding rows */
    bool direct;
    uint64_t file_size;
    const uint8_t *embd_copy; /* tied embedding inside the resident head, else NULL */
    pthread_mutex_t rows_mu;  /* the row cache: a self-drafter reads rows from its own thread */
    uint8_t *rows;            /* [n_rows][nb1] */
    int32_t *row_token;       /* [n_rows] the token each slot holds, -1 */
    int32_t n_rows;
    int32_t *order; /* streamed units, in pass order */
    int n_order;
    slot *slots;
    int n_slots;
    pthread_t reader;
    bool reader_started;
    pthread_mutex_t mu;
    pthread_cond_t cv_ready, cv_free;
    int64_t read_seq, use_seq; /* units read / taken since creation */
    bool stop;
    ar_status error; /* sticky: the first failed read */
    char errmsg[320];
    ar_stream_stats stats;
};

ar_stream_params ar_stream_default_params(void) {
    return (ar_stream_params){.budget = 0, .n_slots = 2, .min_resident = 0, .direct = true};
}

static uint64_t align_down(uint64_t x) {
    return x / IO_ALIGN * IO_ALIGN;
}
static uint64_t align_up(uint64_t x) {
    return (x + IO_ALIGN - 1) / IO_ALIGN * IO_ALIGN;
}
static double mib(uint64_t b) {
    return (double)b / (1024.0 * 1024.0);
}

/* ---- units ---- */

static bool in_unit(const ar_model *m, int32_t u, const ar_gguf_tensor *t) {
    if (u < m->hp.n_layer) {
        char prefix[32];
        int k = snprintf(prefix, sizeof prefix, "blk.%d.", u);
        return !strncmp(t->name, prefix, (size_t)k);
    }
    const bool tied = m->output.data == m->tok_embd.data;
    return !strcmp(t->name, "output.weight") || !strcmp(t->name, "output_norm.weight") ||
           (tied && !strcmp(t->name, "token_embd.weight"));
}

typedef struct span {
    uint64_t lo, hi;
} span;

static int by_lo(const void *a, const void *b) {
    const span *x = a, *y = b;
    return (x->lo > y->lo) - (x->lo < y->lo);
}

/* The unit's extents: its tensors' byte ranges sorted, merged across small gaps, aligned. */
static ar_status unit_extents(const ar_model *m, unit *u) {
    const ar_gguf *g = m->gguf;
    span *sp = malloc(sizeof *sp * (g->n_tensors ? g->n_tensors : 1));
    if (!sp) return ar_fail(AR_ERR_NOMEM, "stream: out of memory");
    size_t n = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const ar_gguf_tensor *t = &g->tensors[i];
        if (!in_unit(m, u->layer, t) || !t->nbytes) continue;
        const uint64_t lo = (uint64_t)((const uint8_t *)t->data - g->map);
        sp[n++] = (span){lo, lo + t->nbytes};
    }
    qsort(sp, n, sizeof *sp, by_lo);
    size_t k = 0; /* merged, aligned spans in sp[0..k) */
    for (size_t i = 0; i < n; i++) {
        const span a = {align_down(sp[i].lo), align_up(sp[i].hi)};
        if (k && a.lo <= sp[k - 1].hi + GAP_MAX)
            sp[k - 1].hi = AR_MAX(sp[k - 1].hi, a.hi);
        else
            sp[k++] = a;
    }
    u->ext = calloc(k ? k : 1, sizeof *u->ext);
    if (!u->ext) {
        free(sp);
        return ar_fail(AR_ERR_NOMEM, "stream: out of memory");
    }
    u->n_ext = (int)k;
    u->bytes = 0;
    for (size_t i = 0; i < k; i++) {
        u->ext[i] = (extent){.off = sp[i].lo, .len = sp[i].hi - sp[i].lo, .buf_off = u->bytes};
        u->bytes += u->ext[i].len;
    }
    free(sp);
    return AR_OK;
}

/* The unit's view over `buf` (its extents' bytes at their buffer offsets). */
static ar_status make_view(const ar_stream *s, const unit *u, const uint8_t *buf, ar_layer *view,
                           ar_tensor *head, const float **head_norm) {
    const ar_model *m = s->m;
    const ar_gguf *g = m->gguf;
    if (u->layer < m->hp.n_layer) {
        *view = m->layers[u->layer];
        for (int e = 0; e < u->n_ext; e++)
            ar_layer_rebase(view, g->map + u->ext[e].off, u->ext[e].len, buf + u->ext[e].buf_off);
        if (ar_layer_points_into(view, g->map, g->size))
            return ar_fail(AR_ERR_UNSUPPORTED,
                           "%s: layer %d uses a tensor not named blk.%d.*: it cannot be streamed",
                           m->path, u->layer, u->layer);
        return AR_OK;
    }
    *head = m->output;
    *head_norm = m->output_norm;
    bool moved_head = false;
    for (int e = 0; e < u->n_ext; e++) {
        const uint8_t *from = g->map + u->ext[e].off, *to = buf + u->ext[e].buf_off;
        const size_t len = u->ext[e].len;
        const uint8_t *hd = head->data;
        if (hd >= from && hd < from + len)
            head->data = to + (hd - from), head->packed = NULL, moved_head = true;
        const uint8_t *nd = (const uint8_t *)*head_norm;
        if (nd >= from && nd < from + len) *head_norm = (const float *)(to + (nd - from));
    }
    if (!moved_head)
        return ar_fail(AR_ERR_INTERNAL, "%s: the output matrix is not in the head unit", m->path);
    return AR_OK;
}

/* ---- the plan ---- */

static void free_units(unit *units, int n) {
    if (!units) return;
    for (int i = 0; i < n; i++) {
        free(units[i].ext);
        free(units[i].copy);
    }
    free(units);
}

static ar_status make_units(const ar_model *m, unit **out) {
    const int n = m->hp.n_layer + 1;
    unit *units = calloc((size_t)n, sizeof *units);
    if (!units) return ar_fail(AR_ERR_NOMEM, "stream: out of memory");
    for (int i = 0; i < n; i++) {
        units[i].layer = i;
        ar_status s = unit_extents(m, &units[i]);
        if (s != AR_OK) {
            free_units(units, n);
            return s;
        }
    }
    *out = units;
    return AR_OK;
}

/* Whether layer i of L is resident when k are: layers [0, prefix) (a self-drafter's), and the
 * other k - prefix spread evenly over the rest. Spread, not first: a pass computes a resident
 * layer while the reader fills the slot a streamed one gave back, so the disk stays busy; k
 * resident layers in a row (a wide tree's pass spends 10 ms on each) would leave the reader
 * waiting with full slots for all of them. */
static bool layer_resident(int32_t i, int32_t L, int32_t k, int32_t prefix) {
    if (i < 0 || i >= L) return false;
    if (i < prefix) return true;
    if (k <= prefix) return false;
    const int64_t n = L - prefix, r = k - prefix, j = i - prefix;
    return (j + 1) * r / n > j * r / n;
}

bool ar_stream_plan_layer_resident(const ar_stream_plan *p, int32_t l) {
    return layer_resident(l, p->n_units - 1, p->n_resident_layers, p->prefix_layers);
}

/* Resident: the head (when head_res) and k layers (layer_resident). */
static void plan_option(const unit *units, int32_t n_layer, int32_t k, int32_t prefix,
                        bool head_res, int32_t n_slots, ar_stream_plan *p) {
    memset(p, 0, sizeof *p);
    p->n_units = n_layer + 1;
    p->prefix_layers = AR_MIN(prefix, k);
    uint64_t largest_streamed = 0;
    for (int32_t i = 0; i <= n_layer; i++) {
        const bool res = i == n_layer ? head_res : layer_resident(i, n_layer, k, prefix);
        p->largest_unit = AR_MAX(p->largest_unit, units[i].bytes);
        p->needed_all += units[i].bytes;
        if (res) {
            p->resident_bytes += units[i].bytes;
            p->n_resident++;
            p->n_resident_layers += i < n_layer;
        } else {
            p->streamed_bytes += units[i].bytes;
            largest_streamed = AR_MAX(largest_streamed, units[i].bytes);
        }
    }
    p->head_resident = head_res;
    p->n_slots = p->streamed_bytes ? n_slots : 0;
    p->slot_bytes = (uint64_t)p->n_slots * largest_streamed;
}

/* Rows of the embedding row cache at most: none when the embedding is the head (it is then read
 * with it, or resident with it). */
static int32_t row_cache_max_rows(const ar_model *m) {
    return m->output.data == m->tok_embd.data ? 0 : AR_MIN(ROW_CACHE_ROWS, m->hp.n_vocab);
}

static uint64_t row_cache_bytes(const ar_model *m, int32_t rows) {
    return (uint64_t)rows * (m->tok_embd.nb1 + sizeof(int32_t));
}

/* The plan that streams least within budget (false if none), and the smallest plan there is. */
static bool best_plan(const unit *units, int32_t L, int32_t n_slots, int32_t min_res,
                      uint64_t budget, ar_stream_plan *best, ar_stream_plan *smallest) {
    bool found = false;
    uint64_t smallest_total = UINT64_MAX;
    ar_stream_plan p;
    for (int h = 1; h >= 0; h--) {
        if (!h && min_res > 0) continue; /* a self-drafter needs the head */
        for (int32_t k = L; k >= min_res; k--) {
            plan_option(units, L, k, min_res, h, n_slots, &p);
            const uint64_t total = p.resident_bytes + p.slot_bytes;
            if (total < smallest_total) smallest_total = total, *smallest = p;
            if (total > budget) continue;
            /* least streamed wins; on a tie the resident head (it comes first: h = 1) */
            if (!found || p.streamed_bytes < best->streamed_bytes) *best = p, found = true;
        }
    }
    return found;
}

/* The row cache has its full size unless no plan fits beside it at all; then it is halved (to
 * nothing) until one does, so that it never makes a budget too small. */
static ar_status plan_units(const ar_model *m, const unit *units, const ar_stream_params *prm,
                            ar_stream_plan *out) {
    const int32_t L = m->hp.n_layer;
    const int32_t n_slots = prm->n_slots > 0 ? AR_MAX(prm->n_slots, 2) : 2;
    const int32_t min_res = AR_MAX(0, AR_MIN(prm->min_resident, L));
    ar_stream_plan best = {0}, smallest = {0};
    int32_t rows = row_cache_max_rows(m);
    for (;;) {
        const uint64_t rc = row_cache_bytes(m, rows);
        const uint64_t budget = prm->budget > rc ? prm->budget - rc : 0;
        if (best_plan(units, L, n_slots, min_res, budget, &best, &smallest)) break;
        if (rows == 0) {
            return ar_fail(AR_ERR_NOMEM,
                           "%s: %.1f MiB for its weights is too little: streaming needs %.1f MiB "
                           "(%d slot buffers of %.1f MiB, the largest unit%s, + %.1f MiB "
                           "resident)",
                           m->path, mib(prm->budget),
                           mib(smallest.resident_bytes + smallest.slot_bytes), smallest.n_slots,
                           smallest.n_slots ? mib(smallest.slot_bytes / (uint64_t)smallest.n_slots)
                                            : 0.0,
                           min_res ? "; the self-drafter's layers and the head stay resident" : "",
                           mib(smallest.resident_bytes));
        }
        rows = rows >= 128 ? rows / 2 : 0;
    }
    best.min_budget = smallest.resident_bytes + smallest.slot_bytes;
    best.row_cache_rows = rows;
    best.row_cache_bytes = row_cache_bytes(m, rows);
    best.needed_all += row_cache_bytes(m, row_cache_max_rows(m));
    *out = best;
    return AR_OK;
}

ar_status ar_stream_plan_for(const ar_model *m, const ar_stream_params *p, ar_stream_plan *out) {
    unit *units = NULL;
    ar_status s = make_units(m, &units);
    if (s == AR_OK) s = plan_units(m, units, p, out);
    free_units(units, m->hp.n_layer + 1);
    return s;
}

/* ---- reading ---- */

/* Reads a unit's extents into buf. Called by the reader thread (streamed units) and at creation
 * (resident ones). */
static ar_status read_unit(ar_stream *s, const unit *u, uint8_t *buf, uint64_t *bytes,
                           double *seconds) {
    const double t0 = ar_now();
    *bytes = 0;
    for (int e = 0; e < u->n_ext; e++) {
        const extent *x = &u->ext[e];
        const uint64_t expect = x->off < s->file_size ? AR_MIN(x->len, s->file_size - x->off) : 0;
        uint64_t done = 0;
        while (done < x->len) {
            const size_t want = (size_t)AR_MIN((uint64_t)READ_CHUNK, x->len - done);
            const ssize_t r = pread(s->fd, buf + x->buf_off + done, want, (off_t)(x->off + done));
            if (r < 0 && errno == EINTR) continue;
            if (r < 0)
                return ar_fail(AR_ERR_IO, "%s: read error at offset %" PRIu64 " (%s weights): %s",
                               s->m->path, x->off + done,
                               u->layer < s->m->hp.n_layer ? "a layer's" : "the head's",
                               strerror(errno));
            if (r == 0) break; /* end of file */
            done += (uint64_t)r;
        }
        if (done < expect)
            return ar_fail(AR_ERR_IO,
                           "%s: only %" PRIu64 " of %" PRIu64 " bytes at offset %" PRIu64
                           " could be read: the file was shortened after it was opened",
                           s->m->path, done, expect, x->off);
        if (!s->direct) posix_fadvise(s->fd, (off_t)x->off, (off_t)x->len, POSIX_FADV_DONTNEED);
        *bytes += done;
    }
    *seconds = ar_now() - t0;
    return AR_OK;
}

static void *reader_main(void *arg) {
    ar_stream *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->stop && s->error == AR_OK) {
        slot *sl = &s->slots[s->read_seq % s->n_slots];
        while (!s->stop && sl->state != SLOT_FREE) pthread_cond_wait(&s->cv_free, &s->mu);
        if (s->stop) break;
        const int32_t ui = s->order[s->read_seq % s->n_order];
        pthread_mutex_unlock(&s->mu);
        uint64_t bytes = 0;
        double secs = 0.0;
        ar_status st = read_unit(s, &s->units[ui], sl->buf, &bytes, &secs);
        if (st == AR_OK)
            st = make_view(s, &s->units[ui], sl->buf, &sl->view, &sl->head, &sl->head_norm);
        pthread_mutex_lock(&s->mu);
        if (st != AR_OK) {
            s->error = st;
            snprintf(s->errmsg, sizeof s->errmsg, "%s", ar_last_error());
        } else {
            sl->unit = ui;
            sl->state = SLOT_READY;
            s->read_seq++;
            s->stats.bytes_read += bytes;
            s->stats.read_seconds += secs;
            s->stats.units_read++;
        }
        pthread_cond_broadcast(&s->cv_ready);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- creation ---- */

/* Buffers for units and slots: 2 MB aligned with huge pages asked for where they are large (the
 * kernels stream through them every pass, and 4 KB pages cost a TLB miss each: a 2-layer
 * drafter's batches measured 27 ms over 4 KB pages against 21 ms over the page cache's folios).
 * The size is not rounded up: the budget counts the bytes asked for. */
#define HUGE_PAGE (2u << 20)
static void *alloc_io(uint64_t bytes) {
    void *p = NULL;
    const size_t align = bytes >= HUGE_PAGE ? HUGE_PAGE : IO_ALIGN;
    if (bytes > SIZE_MAX || posix_memalign(&p, align, (size_t)AR_MAX(bytes, IO_ALIGN)) != 0)
        return NULL;
#ifdef MADV_HUGEPAGE
    if (bytes >= HUGE_PAGE) madvise(p, (size_t)bytes / HUGE_PAGE * HUGE_PAGE, MADV_HUGEPAGE);
#endif
    return p;
}

ar_status ar_stream_create(const ar_model *m, const ar_stream_params *p, ar_stream **out) {
    *out = NULL;
    if (m->vocab_only || !m->gguf->owns_map)
        return ar_fail(AR_ERR_INVALID_ARG, "%s: only a model loaded from a file can be streamed",
                       m->path);
    ar_stream *s = calloc(1, sizeof *s);
    if (!s) return ar_fail(AR_ERR_NOMEM, "stream: out of memory");
    s->m = m;
    s->fd = s->fd_rows = -1;
    s->n_units = m->hp.n_layer + 1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv_ready, NULL);
    pthread_cond_init(&s->cv_free, NULL);
    pthread_mutex_init(&s->rows_mu, NULL);
    ar_status st = make_units(m, &s->units);
    if (st == AR_OK) st = plan_units(m, s->units, p, &s->plan);
    if (st != AR_OK) goto fail;

    /* the file as it is now: it must still be the one that was mapped */
    s->direct = p->direct;
    s->fd = open(m->path, O_RDONLY | O_CLOEXEC | (p->direct ? O_DIRECT : 0));
    if (s->fd < 0 && p->direct && errno == EINVAL) { /* no O_DIRECT here (tmpfs) */
        s->direct = false;
        s->fd = open(m->path, O_RDONLY | O_CLOEXEC);
    }
    s->fd_rows = open(m->path, O_RDONLY | O_CLOEXEC);
    /* rows are read one at a time, far apart: readahead would read pages no one asked for */
    if (s->fd_rows >= 0) posix_fadvise(s->fd_rows, 0, 0, POSIX_FADV_RANDOM);
    struct stat st_now;
    if (s->fd < 0 || s->fd_rows < 0 || fstat(s->fd, &st_now) != 0) {
        st = ar_fail(AR_ERR_IO, "%s: cannot open for streaming: %s", m->path, strerror(errno));
        goto fail;
    }
    s->file_size = (uint64_t)st_now.st_size;
    if (s->file_size != m->gguf->size) {
        st = ar_fail(AR_ERR_IO, "%s: the file is %" PRIu64 " bytes now, %zu when it was loaded",
                     m->path, s->file_size, m->gguf->size);
        goto fail;
    }
    if (s->direct) { /* some filesystems take O_DIRECT at open and refuse its reads */
        uint8_t *probe = alloc_io(IO_ALIGN);
        ssize_t r = probe ? pread(s->fd, probe, IO_ALIGN, 0) : -1;
        const int err = errno;
        free(probe);
        if (r < 0 && err == EINVAL) {
            close(s->fd);
            s->direct = false;
            s->fd = open(m->path, O_RDONLY | O_CLOEXEC);
            if (s->fd < 0) {
                st = ar_fail(AR_ERR_IO, "%s: cannot open: %s", m->path, strerror(errno));
                goto fail;
            }
        }
    }

    /* resident units: read once */
    for (int i = 0; i < s->n_units; i++) {
        unit *u = &s->units[i];
        u->resident = i == m->hp.n_layer ? s->plan.head_resident
                                         : ar_stream_plan_layer_resident(&s->plan, i);
        if (!u->resident) continue;
        if (!(u->copy = alloc_io(u->bytes))) {
            st = ar_fail(AR_ERR_NOMEM, "%s: no memory for %.1f MiB of resident weights", m->path,
                         mib(u->bytes));
            goto fail;
        }
        uint64_t bytes;
        double secs;
        if ((st = read_unit(s, u, u->copy, &bytes, &secs)) != AR_OK) goto fail;
        if ((st = make_view(s, u, u->copy, &u->view, &u->head, &u->head_norm)) != AR_OK) goto fail;
        mlock(u->copy, u->bytes); /* best effort: anonymous memory is not evicted without swap */
    }
    const unit *hu = &s->units[m->hp.n_layer];
    if (hu->resident && m->output.data == m->tok_embd.data) s->embd_copy = hu->head.data;
    if ((s->n_rows = s->plan.row_cache_rows) > 0) {
        s->rows = malloc((size_t)s->n_rows * m->tok_embd.nb1);
        s->row_token = malloc((size_t)s->n_rows * sizeof(int32_t));
        if (!s->rows || !s->row_token) {
            st = ar_fail(AR_ERR_NOMEM, "stream: out of memory for the embedding row cache");
            goto fail;
        }
        memset(s->row_token, 0xff, (size_t)s->n_rows * sizeof(int32_t));
    }

    /* the streamed units, their slots and the reader */
    s->order = calloc((size_t)s->n_units, sizeof *s->order);
    if (!s->order) {
        st = ar_fail(AR_ERR_NOMEM, "stream: out of memory");
        goto fail;
    }
    for (int i = 0; i < s->n_units; i++)
        if (!s->units[i].resident) s->order[s->n_order++] = i;
    if (s->n_order) {
        const uint64_t slot_bytes = s->plan.slot_bytes / (uint64_t)s->plan.n_slots;
        s->n_slots = s->plan.n_slots;
        s->slots = calloc((size_t)s->n_slots, sizeof *s->slots);
        if (!s->slots) {
            st = ar_fail(AR_ERR_NOMEM, "stream: out of memory");
            goto fail;
        }
        for (int i = 0; i < s->n_slots; i++)
            if (!(s->slots[i].buf = alloc_io(slot_bytes))) {
                st = ar_fail(AR_ERR_NOMEM, "%s: no memory for %d slots of %.1f MiB", m->path,
                             s->n_slots, mib(slot_bytes));
                goto fail;
            }
        if (pthread_create(&s->reader, NULL, reader_main, s) != 0) {
            st = ar_fail(AR_ERR_NOMEM, "stream: cannot start the reader thread");
            goto fail;
        }
        s->reader_started = true;
    }
    /* what the mapping has faulted in of the weights (load-time checks, dequantized vectors)
     * leaves the resident set and the page cache: nothing reads the weights through it now */
    const ar_gguf *g = m->gguf;
    const uint64_t data0 = align_down(g->data_offset);
    if (g->size > data0) {
        madvise((void *)(g->map + data0), g->size - data0, MADV_DONTNEED);
        madvise((void *)(g->map + data0), g->size - data0, MADV_RANDOM);
        posix_fadvise(s->fd_rows, (off_t)data0, (off_t)(g->size - data0), POSIX_FADV_DONTNEED);
    }
    *out = s;
    return AR_OK;
fail:
    ar_stream_free(s);
    return st;
}

void ar_stream_free(ar_stream *s) {
    if (!s) return;
    if (s->reader_started) {
        pthread_mutex_lock(&s->mu);
        s->stop = true;
        pthread_cond_broadcast(&s->cv_free);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->reader, NULL);
    }
    if (s->slots)
        for (int i = 0; i < s->n_slots; i++) free(s->slots[i].buf);
    free(s->slots);
    free(s->order);
    free_units(s->units, s->n_units);
    if (s->fd >= 0) close(s->fd);
    if (s->fd_rows >= 0) close(s->fd_rows);
    free(s->rows);
    free(s->row_token);
    pthread_mutex_destroy(&s->rows_mu);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv_ready);
    pthread_cond_destroy(&s->cv_free);
    free(s);
}

const ar_stream_plan *ar_stream_get_plan(const ar_stream *s) {
    return &s->plan;
}

/* ---- the forward pass ---- */

/* Waits for the streamed unit `ui`, the next one the pass takes. */
static ar_status failed(ar_stream *s) { /* with s->mu held; releases it */
    const ar_status e = s->error;
    char msg[sizeof s->errmsg];
    memcpy(msg, s->errmsg, sizeof msg);
    pthread_mutex_unlock(&s->mu);
    return ar_fail(e, "%s", msg);
}

static ar_status take(ar_stream *s, int32_t ui, slot **out) {
    pthread_mutex_lock(&s->mu);
    if (s->error != AR_OK && s->slots[s->use_seq % s->n_slots].state != SLOT_READY)
        return failed(s); /* sticky: the passes after a failed read fail alike */
    if (s->order[s->use_seq % s->n_order] != ui) {
        const int32_t want = s->order[s->use_seq % s->n_order];
        pthread_mutex_unlock(&s->mu);
        return ar_fail(AR_ERR_INTERNAL, "stream: a pass took unit %d where unit %d comes next", ui,
                       want);
    }
    slot *sl = &s->slots[s->use_seq % s->n_slots];
    if (sl->state != SLOT_READY && s->error == AR_OK) {
        const double t0 = ar_now();
        s->stats.waits++;
        while (sl->state != SLOT_READY && s->error == AR_OK)
            pthread_cond_wait(&s->cv_ready, &s->mu);
        s->stats.wait_seconds += ar_now() - t0;
    }
    if (sl->state != SLOT_READY) return failed(s); /* the reader failed before reaching it */
    pthread_mutex_unlock(&s->mu);
    *out = sl;
    return AR_OK;
}

static void give_back(ar_stream *s) {
    pthread_mutex_lock(&s->mu);
    s->slots[s->use_seq % s->n_slots].state = SLOT_FREE;
    s->use_seq++;
    pthread_cond_signal(&s->cv_free);
    pthread_mutex_unlock(&s->mu);
}

ar_status ar_stream_layer_begin(ar_stream *s, int32_t l, const ar_layer **out) {
    if (l < 0 || l >= s->m->hp.n_layer)
        return ar_fail(AR_ERR_INTERNAL, "stream: layer %d out of range", l);
    const unit *u = &s->units[l];
    if (u->resident) {
        *out = &u->view;
        return AR_OK;
    }
    slot *sl;
    ar_status st = take(s, l, &sl);
    if (st == AR_OK) *out = &sl->view;
    return st;
}

void ar_stream_layer_end(ar_stream *s, int32_t l) {
    if (!s->units[l].resident) give_back(s);
}

ar_status ar_stream_head_begin(ar_stream *s, const float **norm, const ar_tensor **out) {
    const int32_t h = s->m->hp.n_layer;
    const unit *u = &s->units[h];
    if (u->resident) {
        *norm = u->head_norm;
        *out = &u->head;
        return AR_OK;
    }
    slot *sl;
    ar_status st = take(s, h, &sl);
    if (st == AR_OK) *norm = sl->head_norm, *out = &sl->head;
    return st;
}

void ar_stream_head_end(ar_stream *s) {
    if (!s->units[s->m->hp.n_layer].resident) give_back(s);
}

size_t ar_stream_embed_scratch_bytes(const ar_model *m) {
    return m->tok_embd.nb1 + 64;
}

/* Where the embedding row of `token` lies in the file. */
static uint64_t embed_row_offset(const ar_model *m, int32_t token) {
    return (uint64_t)((const uint8_t *)m->tok_embd.data - m->gguf->map) +
           (uint64_t)token * m->tok_embd.nb1;
}

void ar_stream_embed_prefetch(ar_stream *s, const int32_t *tokens, int32_t n) {
    if (s->embd_copy) return;
    for (int32_t i = 0; i < n; i++) {
        const int32_t t = tokens[i];
        if (s->rows) {
            pthread_mutex_lock(&s->rows_mu);
            const bool cached = s->row_token[t % s->n_rows] == t;
            pthread_mutex_unlock(&s->rows_mu);
            if (cached) continue;
        }
        posix_fadvise(s->fd_rows, (off_t)embed_row_offset(s->m, t), (off_t)s->m->tok_embd.nb1,
                      POSIX_FADV_WILLNEED);
    }
}

ar_status ar_stream_embed(ar_stream *s, int32_t token, void *scratch, float *out) {
    const ar_model *m = s->m;
    const ar_type_traits *tt = ar_type_get(m->tok_embd.type);
    const size_t nb1 = m->tok_embd.nb1;
    if (s->embd_copy) {
        tt->to_float(s->embd_copy + (size_t)token * nb1, out, m->hp.n_embd);
        return AR_OK;
    }
    uint8_t *row = s->rows ? s->rows + (size_t)(token % s->n_rows) * nb1 : NULL;
    if (row) {
        pthread_mutex_lock(&s->rows_mu);
        if (s->row_token[token % s->n_rows] == token) { /* converted under the lock: a slot */
            tt->to_float(row, out, m->hp.n_embd);       /* may be refilled by the other thread */
            pthread_mutex_unlock(&s->rows_mu);
            return AR_OK;
        }
        pthread_mutex_unlock(&s->rows_mu);
    }
    const uint64_t off = embed_row_offset(m, token);
    size_t done = 0;
    while (done < nb1) {
        ssize_t r = pread(s->fd_rows, (uint8_t *)scratch + done, nb1 - done, (off_t)(off + done));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0)
            return ar_fail(AR_ERR_IO, "%s: read error at offset %" PRIu64 " (embedding row): %s",
                           m->path, off + done, strerror(errno));
        if (r == 0)
            return ar_fail(AR_ERR_IO,
                           "%s: embedding row of token %d at offset %" PRIu64
                           " is past the end: the file was shortened after it was opened",
                           m->path, token, off);
        done += (size_t)r;
    }
    tt->to_float(scratch, out, m->hp.n_embd);
    if (row) {
        pthread_mutex_lock(&s->rows_mu);
        memcpy(row, scratch, nb1);
        s->row_token[token % s->n_rows] = token;
        pthread_mutex_unlock(&s->rows_mu);
    }
    return AR_OK;
}

void ar_stream_get_stats(ar_stream *s, ar_stream_stats *out) {
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    pthread_mutex_unlock(&s->mu);
}
