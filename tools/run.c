// run: `halyard run -m MODEL -p PROMPT` — generate text from a prompt (or chat turns with
// --chat / --interactive) on the CPU or (--device cuda) the CUDA backend, streaming it to
// stdout; prompt and generation speeds go to stderr.
#include <stdio.h>
#include <stdlib.h>

#include "engine/generate.h"
#include "engine/kv_cache.h"
#include "engine/model.h"
#include "engine/quant.h"
#include "server/prompt.h"
#include "tokenizer/chat.h"
#include "tools/cli.h"

#define MAX_TURNS 256
#define MAX_STOPS 8

typedef struct run_args {
    const char *model, *prompt, *system, *template_name, *tokenizer_from, *device, *kv_dtype;
    const char *stops[MAX_STOPS];
    int n_stops;
    bool chat, interactive, verbose;
    long long n_predict, top_k, seed, threads, ctx, chunk;
    double temp, top_p, min_p, repeat_penalty;
    bool has_seed;
    int kv_type; // from --kv-cache-dtype
} run_args;

static void usage(FILE *f) {
    fprintf(f,
            "usage: halyard run -m MODEL [-p PROMPT] [--chat] [--system S] [--chat-template NAME]\n"
            "                   [-n N] [--temp T] [--top-p P] [--top-k K] [--min-p P] [--repeat-penalty R]\n"
            "                   [--seed S] [--stop TEXT] [-t THREADS] [--ctx N] [--chunk N]\n"
            "                   [--tokenizer-from FILE.gguf] [--interactive] [--device cpu|cuda[:N]]\n"
            "                   [--kv-cache-dtype f16|f32|int8]\n"
            "Generates text after PROMPT and streams it to stdout; prompt and generation speed go to\n"
            "stderr. --chat wraps PROMPT (and --system) in the model's chat template (or NAME: %s).\n"
            "--interactive is a chat loop over stdin lines, keeping the history. Defaults: -n 256,\n"
            "--temp 0.8, --top-k 40, --top-p 0.95, --min-p 0.05 (--temp 0 is greedy), --ctx 4096.\n"
            "--kv-cache-dtype: K/V cache elements, f16 (default), f32 or int8 (about half of f16's memory).\n"
            "MODEL: GGUF, safetensors folder or synthetic:<shape>:<type>.\n",
            HL_CHAT_NAMES);
}

// Options that take a number; false after printing the problem.
static bool parse_number(run_args *a, const char *s, const char *v, bool *known) {
    *known = true;
    if (strcmp(s, "-n") == 0 || strcmp(s, "--n-predict") == 0)
        return hl_cli_parse_int(s, v, -1, 1 << 30, &a->n_predict);
    if (strcmp(s, "--top-k") == 0) return hl_cli_parse_int(s, v, 0, 1 << 30, &a->top_k);
    if (strcmp(s, "-t") == 0 || strcmp(s, "--threads") == 0) return hl_cli_parse_int(s, v, 0, 1024, &a->threads);
    if (strcmp(s, "--ctx") == 0) return hl_cli_parse_int(s, v, 16, 1 << 20, &a->ctx);
    if (strcmp(s, "--chunk") == 0) return hl_cli_parse_int(s, v, 1, 8192, &a->chunk);
    if (strcmp(s, "--seed") == 0) return (a->has_seed = hl_cli_parse_int(s, v, 0, INT64_MAX, &a->seed));
    if (strcmp(s, "--temp") == 0) return hl_cli_parse_float(s, v, &a->temp);
    if (strcmp(s, "--top-p") == 0) return hl_cli_parse_float(s, v, &a->top_p);
    if (strcmp(s, "--min-p") == 0) return hl_cli_parse_float(s, v, &a->min_p);
    if (strcmp(s, "--repeat-penalty") == 0) return hl_cli_parse_float(s, v, &a->repeat_penalty);
    *known = false;
    return true;
}

static bool parse_string(run_args *a, const char *s, const char *v) {
    if (strcmp(s, "-m") == 0 || strcmp(s, "--model") == 0) a->model = v;
    else if (strcmp(s, "-p") == 0 || strcmp(s, "--prompt") == 0) a->prompt = v;
    else if (strcmp(s, "--system") == 0) a->system = v;
    else if (strcmp(s, "--chat-template") == 0) a->template_name = v;
    else if (strcmp(s, "--tokenizer-from") == 0) a->tokenizer_from = v;
    else if (strcmp(s, "--device") == 0) a->device = v;
    else if (strcmp(s, "--kv-cache-dtype") == 0) a->kv_dtype = v;
    else if (strcmp(s, "--stop") == 0 && a->n_stops < MAX_STOPS) a->stops[a->n_stops++] = v;
    else return false;
    return true;
}

static int parse_args(int argc, char **argv, run_args *a) {
    *a = (run_args){.n_predict = 256, .top_k = 40, .ctx = 4096, .chunk = 256, .temp = 0.8, .top_p = 0.95,
                    .min_p = 0.05, .repeat_penalty = 1.0, .kv_type = HL_DTYPE_F16};
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool known = true;
        if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0) {
            usage(stdout);
            return 1;
        }
        if (strcmp(s, "--chat") == 0) a->chat = true;
        else if (strcmp(s, "--interactive") == 0 || strcmp(s, "-i") == 0) a->interactive = a->chat = true;
        else if (strcmp(s, "--verbose") == 0) a->verbose = true;
        else if (v && parse_string(a, s, v)) i++;
        else if (!v || !parse_number(a, s, v, &known) || !known) {
            if (!known || !v) fprintf(stderr, "halyard run: unknown option or missing value: %s\n", s);
            return 2;
        } else i++;
    }
    hl_error err = {0};
    if (a->kv_dtype && hl_kv_cache_dtype_parse(a->kv_dtype, &a->kv_type, &err) != HL_OK) {
        fprintf(stderr, "halyard run: --kv-cache-dtype: %s\n", err.msg);
        return 2;
    }
    if (!a->model || (!a->prompt && !a->interactive)) {
        usage(stderr);
        return 2;
    }
    return 0;
}

// ---- chat ----

static const char *token_text(const hl_tokenizer *tok, int32_t id, char *buf, size_t size) {
    size_t len = 0;
    const char *t = id >= 0 ? hl_tokenizer_token_text(tok, id, &len) : NULL;
    if (!t || len >= size) return NULL;
    memcpy(buf, t, len);
    buf[len] = '\0';
    return buf;
}

static hl_chat_template *make_template(const hl_model *m, const char *name, hl_error *err) {
    char bos[128], eos[128];
    hl_tokenizer_ids ids = hl_tokenizer_special_ids(m->tok);
    hl_chat_template_params p = {.name = name, .jinja = hl_tokenizer_chat_template(m->tok),
                                 .bos_text = token_text(m->tok, ids.bos, bos, sizeof bos),
                                 .eos_text = token_text(m->tok, ids.eos, eos, sizeof eos)};
    if (!p.name && !p.jinja) p.name = m->chat_template_name;
    return hl_chat_template_create(&p, err);
}

// The template's turn-end texts as token ids (end-of-generation for this conversation).
static int template_stop_ids(const hl_model *m, const hl_chat_template *t, int32_t *ids, int max) {
    int n = 0;
    for (int i = 0; n < max; i++) {
        const char *text = hl_chat_template_stop_text(t, i);
        if (!text) break;
        int32_t id = hl_tokenizer_token_id(m->tok, text, strlen(text));
        if (id >= 0) ids[n++] = id;
    }
    return n;
}

// ---- streaming ----

typedef struct reply {
    char *text; // the assistant's reply so far (interactive history)
    size_t len, cap;
} reply;

static bool on_text(void *ctx, const char *text, size_t len) {
    reply *r = ctx;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    if (r->len + len + 1 > r->cap) {
        r->cap = (r->len + len + 1) * 2;
        r->text = hl_xrealloc(r->text, r->cap);
    }
    memcpy(r->text + r->len, text, len);
    r->len += len;
    r->text[r->len] = '\0';
    return true;
}

static void print_stats(const hl_generate_result *res) {
    const int n_new = res->n_prompt - res->n_cached, n_dec = res->n_generated - 1;
    fprintf(stderr, "[prompt: %d tokens (%d cached) in %.1f ms, %.2f tok/s | generation: %d tokens in %.1f ms, "
            "%.2f tok/s | finish: %s]\n", n_new, res->n_cached, res->prompt_ms,
            res->prompt_ms > 0 ? n_new * 1000.0 / res->prompt_ms : 0.0, res->n_generated, res->gen_ms,
            res->gen_ms > 0 && n_dec > 0 ? n_dec * 1000.0 / res->gen_ms : 0.0,
            hl_generate_finish_name(res->finish));
}

typedef struct session {
    const run_args *a;
    const hl_model *m;
    hl_generator *gen;
    hl_chat_template *tmpl;
    hl_generate_params gp;
    int32_t stop_ids[8];
    hl_chat_message msgs[MAX_TURNS];
    char *owned[MAX_TURNS]; // message texts this session allocated
    int n_msgs;
} session;

// One generation after the prompt (chat history rendered, or the raw prompt).
static int generate_once(session *s, reply *r, hl_error *err) {
    hl_tokens ids = {0};
    int rc = s->tmpl ? hl_prompt_encode_chat(s->m->tok, s->tmpl, s->msgs, s->n_msgs, &ids, err)
                     : hl_prompt_encode_text(s->m->tok, s->a->prompt, &ids, err);
    hl_generate_result res;
    if (rc == HL_OK) rc = hl_generator_run(s->gen, ids.ids, (int)ids.n, &s->gp, on_text, r, &res, err);
    if (rc == HL_OK) {
        putchar('\n');
        fflush(stdout);
        print_stats(&res);
    }
    hl_tokens_free(&ids);
    return rc;
}

static void add_msg(session *s, const char *role, char *owned_text, const char *text) {
    if (s->n_msgs == MAX_TURNS) return;
    s->owned[s->n_msgs] = owned_text;
    s->msgs[s->n_msgs++] = (hl_chat_message){role, owned_text ? owned_text : text};
}

static int interactive(session *s, hl_error *err) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = HL_OK;
    fprintf(stderr, "> ");
    while (rc == HL_OK && s->n_msgs + 2 <= MAX_TURNS && (len = getline(&line, &cap, stdin)) > 0) {
        if (line[len - 1] == '\n') line[--len] = '\0';
        if (len == 0) {
            fprintf(stderr, "> ");
            continue;
        }
        add_msg(s, "user", hl_xstrdup(line), NULL);
        reply r = {0};
        rc = generate_once(s, &r, err);
        add_msg(s, "assistant", r.text ? r.text : hl_xstrdup(""), NULL);
        fprintf(stderr, "> ");
    }
    free(line);
    return rc;
}

static int session_run(session *s, hl_error *err) {
    const run_args *a = s->a;
    if (a->chat) {
        if (!(s->tmpl = make_template(s->m, a->template_name, err))) return err->code;
        int n = template_stop_ids(s->m, s->tmpl, s->stop_ids, 8);
        s->gp.eog_ids = s->stop_ids;
        s->gp.n_eog_ids = n;
        if (a->system) add_msg(s, "system", NULL, a->system);
    }
    if (a->interactive) {
        if (a->prompt) add_msg(s, "user", NULL, a->prompt);
        reply r = {0};
        int rc = a->prompt ? generate_once(s, &r, err) : HL_OK;
        if (a->prompt) add_msg(s, "assistant", r.text ? r.text : hl_xstrdup(""), NULL);
        return rc == HL_OK ? interactive(s, err) : rc;
    }
    if (a->chat) add_msg(s, "user", NULL, a->prompt);
    reply r = {0};
    int rc = generate_once(s, &r, err);
    free(r.text);
    return rc;
}

static hl_generate_params generate_params(const run_args *a) {
    hl_generate_params gp = hl_generate_default_params();
    hl_sampler_params *sp = &gp.sampling;
    sp->temperature = (float)a->temp;
    sp->top_k = (int)a->top_k;
    sp->top_p = (float)a->top_p;
    sp->min_p = (float)a->min_p;
    sp->repetition_penalty = (float)a->repeat_penalty;
    sp->penalty_last_n = 64; // llama.cpp's window
    sp->has_seed = a->has_seed;
    sp->seed = (uint64_t)a->seed;
    sp->max_tokens = a->n_predict <= 0 ? -1 : (int)a->n_predict;
    gp.stop = a->stops;
    gp.n_stop = a->n_stops;
    return gp;
}

int hl_cmd_run(int argc, char **argv) {
    run_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc == 1 ? 0 : rc;
    hl_error err = {0};
    hl_model_params mp = hl_model_default_params();
    mp.tokenizer_from = a.tokenizer_from;
    session s = {.a = &a, .gp = generate_params(&a)};
    hl_backend *be = hl_backend_create_named(a.device, (int)a.threads, &err);
    hl_model *m = be ? hl_model_load(a.model, be, &mp, &err) : NULL;
    s.m = m;
    if (m && a.verbose)
        fprintf(stderr, "halyard run: %s: %d layers, dim %d, vocab %d\n", m->name, m->cfg.n_layers, m->cfg.dim,
                m->cfg.n_vocab);
    if (m) s.gen = hl_generator_create_kv(m, (int)a.ctx, (int)a.chunk, a.kv_type, &err);
    rc = s.gen ? session_run(&s, &err) : err.code;
    if (rc != HL_OK) fprintf(stderr, "halyard run: %s\n", err.msg);
    for (int i = 0; i < s.n_msgs; i++) free(s.owned[i]);
    hl_chat_template_free(s.tmpl);
    hl_generator_free(s.gen);
    hl_model_free(m);
    hl_backend_free(be);
    return rc == HL_OK ? 0 : 1;
}
