/* pipeline.c: pipelined speculation. While the verifier checks a tree, a thread of its own (and
 * a thread pool of its own) gives the drafter the context up to the leaf of the tree's most
 * likely path: the drafter predicts the bonus token there and drafts the next tree rooted at it.
 * When the verification accepts exactly that path and bonus, the next step takes the tree
 * without drafting (spec.c, phase_draft); otherwise it is discarded. */
#include <pthread.h>
#include <stdlib.h>

#include "engine.h"
#include "spec.h"

typedef struct ar_draft_worker {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int state; /* 0 idle, 1 job posted, 2 job done, -1 stop */
    ar_spec *sp;
    int32_t *ctx;  /* [cap]: the guessed context, then the predicted root */
    int32_t n_ctx; /* guessed context length (root excluded) */
    int32_t root;  /* the predicted bonus token */
    ar_draft_request req;
    ar_status status;
} draft_worker;

static void *worker_main(void *arg) {
    draft_worker *w = arg;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (w->state == 0 || w->state == 2) pthread_cond_wait(&w->cv, &w->mu);
        const int state = w->state;
        pthread_mutex_unlock(&w->mu);
        if (state < 0) return NULL;
        ar_spec *sp = w->sp;
        ar_status s = ar_drafter_predict_next(sp->drafter, w->ctx, w->n_ctx, &w->root);
        if (s == AR_OK && w->root >= 0) {
            w->ctx[w->n_ctx] = w->root;
            w->req.tokens = w->ctx;
            w->req.n_committed = w->n_ctx;
            s = ar_drafter_draft(sp->drafter, &w->req, &sp->tree_ahead, sp->q_ahead);
        }
        pthread_mutex_lock(&w->mu);
        w->status = s;
        w->state = 2;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
}

void ar_pipeline_post(ar_spec *sp, const int32_t *ctx, int32_t n, const ar_draft_request *req) {
    draft_worker *w = sp->worker;
    memcpy(w->ctx, ctx, (size_t)n * sizeof(int32_t));
    w->n_ctx = n;
    w->req = *req;
    pthread_mutex_lock(&w->mu);
    w->state = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

ar_status ar_pipeline_wait(ar_spec *sp, int32_t *root) {
    draft_worker *w = sp->worker;
    pthread_mutex_lock(&w->mu);
    while (w->state == 1) pthread_cond_wait(&w->cv, &w->mu);
    w->state = 0;
    const ar_status s = w->status;
    *root = w->root;
    pthread_mutex_unlock(&w->mu);
    return s;
}

void ar_pipeline_stop(ar_spec *sp) {
    draft_worker *w = sp->worker;
    if (w) {
        pthread_mutex_lock(&w->mu);
        w->state = -1;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thread, NULL);
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
        free(w->ctx);
        free(w);
        sp->worker = NULL;
    }
    ar_pool_free(sp->draft_pool);
    sp->draft_pool = NULL;
    ar_tree_free(&sp->tree_ahead);
    free(sp->q_ahead);
    sp->q_ahead = NULL;
}

ar_status ar_pipeline_start(ar_engine *e, ar_spec *sp) {
    const int32_t nt = e->params.draft_threads > 0 ? e->params.draft_threads : 1;
    ar_status s = ar_pool_create(nt, NULL, &sp->draft_pool);
    if (s != AR_OK) return s;
    if ((s = ar_tree_init(&sp->tree_ahead, sp->tree.cap)) != AR_OK) return s;
    sp->q_ahead = calloc(AR_TREE_MAX, sizeof *sp->q_ahead);
    draft_worker *w = calloc(1, sizeof *w);
    if (!sp->q_ahead || !w) {
        free(w);
        return ar_fail(AR_ERR_NOMEM, "pipelining: out of memory");
    }
    w->sp = sp;
    w->ctx = calloc((size_t)e->kv->cap + 2, sizeof(int32_t));
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (!w->ctx || pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        free(w->ctx);
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
        free(w);
        return ar_fail(AR_ERR_NOMEM, "pipelining: cannot start the drafting thread");
    }
    sp->worker = w;
    ar_drafter_set_pool(sp->drafter, sp->draft_pool);
    sp->pipeline = true;
    return AR_OK;
}
