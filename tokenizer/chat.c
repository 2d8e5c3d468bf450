// chat: built-in chat-template formatters, the Jinja-source detector and the segment builder.
// Each render_* function mirrors one model family's Jinja template; comments name the template
// expressions they reproduce. Fixtures: tests/fixtures/tokenizer/chat_templates/*.jinja.
#include "tokenizer/chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum role { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT, ROLE_TOOL };

static const char *const role_names[] = {"system", "user", "assistant", "tool"};

// ---- prompt builder ----

typedef struct builder {
    char *buf;
    size_t len, cap;
    hl_chat_segment *segs;
    int n_segs, cap_segs;
} builder;

// Appends n bytes of s as template markup or as content; merges with the previous segment of
// the same kind so segments alternate.
static void put(builder *b, const char *s, size_t n, bool is_template) {
    if (n == 0) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        b->buf = hl_xrealloc(b->buf, cap);
        b->cap = cap;
    }
    memcpy(b->buf + b->len, s, n);
    b->buf[b->len + n] = '\0';
    if (b->n_segs > 0 && b->segs[b->n_segs - 1].is_template == is_template) {
        b->segs[b->n_segs - 1].len += n;
        b->len += n;
        return;
    }
    if (b->n_segs == b->cap_segs) {
        b->cap_segs = b->cap_segs ? 2 * b->cap_segs : 16;
        b->segs = hl_xrealloc(b->segs, (size_t)b->cap_segs * sizeof(*b->segs));
    }
    b->segs[b->n_segs++] = (hl_chat_segment){.off = b->len, .len = n, .is_template = is_template};
    b->len += n;
}

static void tmpl(builder *b, const char *s) { put(b, s, strlen(s), true); }
static void content(builder *b, const char *s, size_t n) { put(b, s, n, false); }

static void builder_free(builder *b) {
    free(b->buf);
    free(b->segs);
    memset(b, 0, sizeof(*b));
}

// ---- text helpers ----

// Byte length of the whitespace character at s (what Python's str.isspace accepts, so Jinja's
// trim and str.strip agree with us), or 0 when s[0..n) does not start with one.
static size_t space_len(const unsigned char *s, size_t n) {
    if (n == 0) return 0;
    unsigned c = s[0];
    if ((c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20)) return 1;
    if (c == 0xc2 && n >= 2 && (s[1] == 0x85 || s[1] == 0xa0)) return 2;
    if (n < 3) return 0;
    unsigned cp = ((c & 0x0fu) << 12) | ((s[1] & 0x3fu) << 6) | (s[2] & 0x3fu);
    if ((c & 0xf0) != 0xe0 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80) return 0;
    bool ws = cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 ||
              cp == 0x202f || cp == 0x205f || cp == 0x3000;
    return ws ? 3 : 0;
}

// Byte length of the whitespace character that ends s[0..n), or 0.
static size_t trailing_space_len(const unsigned char *s, size_t n) {
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        if ((s[n - k] & 0xc0) == 0x80) continue; // continuation byte: look further back
        return space_len(s + n - k, k) == k ? k : 0;
    }
    return 0;
}

// Narrows [*s, *s + *n) by Unicode whitespace at the chosen ends (Jinja trim / str.strip).
static void strip(const char **s, size_t *n, bool left, bool right) {
    const unsigned char *u = (const unsigned char *)*s;
    size_t k;
    while (left && (k = space_len(u, *n)) > 0) {
        u += k;
        *n -= k;
    }
    while (right && (k = trailing_space_len(u, *n)) > 0) *n -= k;
    *s = (const char *)u;
}

static void content_stripped(builder *b, const char *s) {
    size_t n = strlen(s);
    strip(&s, &n, true, true);
    content(b, s, n);
}

// Content as json.dumps(s, ensure_ascii=False) writes it (transformers' tojson filter).
static void content_json(builder *b, const char *s) {
    static const char hex[] = "0123456789abcdef";
    content(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[7] = {'\\', 0, 0, 0, 0, 0, 0};
        size_t n = 2;
        switch (*p) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            if (*p >= 0x20) {
                content(b, (const char *)p, 1);
                continue;
            }
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[*p >> 4];
            esc[5] = hex[*p & 15];
            n = 6;
        }
        content(b, esc, n);
    }
    content(b, "\"", 1);
}

// ---- formatters ----

typedef struct chat_input {
    const hl_chat_message *msgs;
    const enum role *roles;
    int n;
    bool agp; // add_generation_prompt
} chat_input;

typedef int (*render_fn)(const hl_chat_template *t, const chat_input *in, builder *b, hl_error *err);

struct hl_chat_template {
    const struct formatter *fmt; // borrowed from the static table
    char *bos;                   // owned
    char *eos;                   // owned
    char *default_system;        // owned; chatml: inserted when the first message is not system
    char date[32];               // llama3.1: "Today Date: " value
    bool skip_empty_system;      // phi3: Phi-3.5 drops a system message with empty content
    bool no_tool;                // chatml: the template wraps tool results in its own markup
    const char *stops[3];        // NULL-terminated; point into fmt or eos
};

static int alternation_error(hl_error *err, int i) {
    return hl_errorf(err, HL_ERR_INVAL,
                     "message %d: conversation roles must alternate user/assistant/user/... "
                     "(after an optional first system message)", i);
}

// llama3 (Meta-Llama-3-8B-Instruct): bos_token on the first message, every role printed as is,
// content | trim.
static int render_llama3(const hl_chat_template *t, const chat_input *in, builder *b, hl_error *err) {
    for (int i = 0; i < in->n; i++) {
        if (i == 0) tmpl(b, t->bos);
        tmpl(b, "<|start_header_id|>");
        tmpl(b, role_names[in->roles[i]]);
        tmpl(b, "<|end_header_id|>\n\n");
        content_stripped(b, in->msgs[i].content);
        tmpl(b, "<|eot_id|>");
    }
    if (in->agp) tmpl(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    return HL_OK;
}

// llama3.1 (Llama-3.1-8B-Instruct, no tools): a system header with the knowledge cutoff and
// date always comes first and holds the trimmed first system message; tool messages become
// ipython turns whose content is JSON-encoded (`message.content is iterable` holds for strings).
static int render_llama31(const hl_chat_template *t, const chat_input *in, builder *b, hl_error *err) {
    tmpl(b, t->bos);
    tmpl(b, "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n");
    tmpl(b, "Today Date: ");
    tmpl(b, t->date);
    tmpl(b, "\n\n");
    int first = 0;
    if (in->roles[0] == ROLE_SYSTEM) {
        content_stripped(b, in->msgs[0].content);
        first = 1;
    }
    tmpl(b, "<|eot_id|>");
    for (int i = first; i < in->n; i++) {
        if (in->roles[i] == ROLE_TOOL) {
            tmpl(b, "<|start_header_id|>ipython<|end_header_id|>\n\n");
            content_json(b, in->msgs[i].content);
            tmpl(b, "<|eot_id|>");
            continue;
        }
        tmpl(b, "<|start_header_id|>");
        tmpl(b, role_names[in->roles[i]]);
        tmpl(b, "<|end_header_id|>\n\n");
        content_stripped(b, in->msgs[i].content);
        tmpl(b, "<|eot_id|>");
    }
    if (in->agp) tmpl(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    return HL_OK;
}

// chatml (SmolLM2, Qwen2, OpenHermes): '<|im_start|>' + role + '\n' + content + '<|im_end|>\n',
// with the template's default system turn when the first message is not a system message.
static int render_chatml(const hl_chat_template *t, const chat_input *in, builder *b, hl_error *err) {
    for (int i = 0; i < in->n; i++) {
        if (in->roles[i] == ROLE_TOOL && t->no_tool)
            return hl_errorf(err, HL_ERR_INVAL,
                             "message %d: this ChatML template formats tool results in its own "
                             "markup, which the built-in formatter does not reproduce", i);
    }
    if (t->default_system && in->roles[0] != ROLE_SYSTEM) {
        tmpl(b, "<|im_start|>system\n");
        tmpl(b, t->default_system);
        tmpl(b, "<|im_end|>\n");
    }
    for (int i = 0; i < in->n; i++) {
        tmpl(b, "<|im_start|>");
        tmpl(b, role_names[in->roles[i]]);
        tmpl(b, "\n");
        content(b, in->msgs[i].content, strlen(in->msgs[i].content));
        tmpl(b, "<|im_end|>\n");
    }
    if (in->agp) tmpl(b, "<|im_start|>assistant\n");
    return HL_OK;
}

// Shared by the templates that fold a leading system message into a user turn: checks that
// the rest alternates user/assistant (skipping tool messages when skip_tool) and that a user
// turn exists to hold the system message.
static int check_alternation(const chat_input *in, int first, bool skip_tool, hl_error *err) {
    if (first >= in->n)
        return hl_errorf(err, HL_ERR_INVAL,
                         "a system message needs a user message after it (this template folds "
                         "the system message into the first user turn)");
    int k = 0;
    for (int i = first; i < in->n; i++) {
        if (skip_tool && in->roles[i] == ROLE_TOOL) continue;
        if ((in->roles[i] == ROLE_USER) != (k % 2 == 0)) return alternation_error(err, i);
        k++;
    }
    return HL_OK;
}

static int only_user_assistant(const chat_input *in, int i, hl_error *err) {
    if (in->roles[i] == ROLE_USER || in->roles[i] == ROLE_ASSISTANT) return HL_OK;
    return hl_errorf(err, HL_ERR_INVAL,
                     "message %d: role '%s' is not supported by this template (only user and "
                     "assistant, after an optional first system message)", i,
                     role_names[in->roles[i]]);
}

// mistral-v1 (Mistral-7B-Instruct-v0.1/v0.2 as published since 2024): bos + ' [INST] ' +
// [system + '\n\n' +] content + ' [/INST]', assistant ' ' + content + eos_token.
static int render_mistral_v1(const hl_chat_template *t, const chat_input *in, builder *b,
                             hl_error *err) {
    int first = in->roles[0] == ROLE_SYSTEM ? 1 : 0;
    int rc = check_alternation(in, first, false, err);
    for (int i = first; rc == HL_OK && i < in->n; i++) rc = only_user_assistant(in, i, err);
    if (rc != HL_OK) return rc;
    tmpl(b, t->bos);
    for (int i = first; i < in->n; i++) {
        const char *c = in->msgs[i].content;
        if (in->roles[i] == ROLE_ASSISTANT) {
            tmpl(b, " ");
            content(b, c, strlen(c));
            tmpl(b, t->eos);
            continue;
        }
        tmpl(b, " [INST] ");
        if (i == first && first == 1) {
            content(b, in->msgs[0].content, strlen(in->msgs[0].content));
            tmpl(b, "\n\n");
        }
        content(b, c, strlen(c));
        tmpl(b, " [/INST]");
    }
    return HL_OK;
}

// mistral-v3 (Mistral-7B-Instruct-v0.3, no tools): '[INST] ' + content + '[/INST]' with the
// system message folded into the LAST message when that is a user message (dropped otherwise,
// as the template does); assistant ' ' + content | trim + eos_token.
static int render_mistral_v3(const hl_chat_template *t, const chat_input *in, builder *b,
                             hl_error *err) {
    int first = in->roles[0] == ROLE_SYSTEM ? 1 : 0;
    int rc = check_alternation(in, first, true, err);
    for (int i = first; rc == HL_OK && i < in->n; i++) {
        if (in->roles[i] == ROLE_TOOL)
            return hl_errorf(err, HL_ERR_INVAL,
                             "message %d: mistral-v3 tool results need a 9-character "
                             "tool_call_id, which plain messages do not carry", i);
        rc = only_user_assistant(in, i, err);
    }
    if (rc != HL_OK) return rc;
    tmpl(b, t->bos);
    for (int i = first; i < in->n; i++) {
        const char *c = in->msgs[i].content;
        if (in->roles[i] == ROLE_ASSISTANT) {
            tmpl(b, " ");
            content_stripped(b, c);
            tmpl(b, t->eos);
            continue;
        }
        tmpl(b, "[INST] ");
        if (i == in->n - 1 && first == 1) {
            content(b, in->msgs[0].content, strlen(in->msgs[0].content));
            tmpl(b, "\n\n");
        }
        content(b, c, strlen(c));
        tmpl(b, "[/INST]");
    }
    return HL_OK;
}

// llama2 user turn: bos + '[INST] ' + content.strip() + ' [/INST]', where content is
// '<<SYS>>\n' + system + '\n<</SYS>>\n\n' + message on the first turn, so the strip can reach
// through an all-blank user message into the '\n\n' after <</SYS>>.
static void llama2_user(const hl_chat_template *t, const char *sys, const char *c, builder *b) {
    size_t n = strlen(c);
    tmpl(b, t->bos);
    tmpl(b, "[INST] ");
    if (!sys) {
        strip(&c, &n, true, true);
        content(b, c, n);
        tmpl(b, " [/INST]");
        return;
    }
    tmpl(b, "<<SYS>>\n");
    content(b, sys, strlen(sys));
    strip(&c, &n, false, true);
    tmpl(b, n > 0 ? "\n<</SYS>>\n\n" : "\n<</SYS>>");
    content(b, c, n);
    tmpl(b, " [/INST]");
}

// llama2 (Llama-2-7b-chat-hf): system in <<SYS>> inside the first [INST]; assistant
// ' ' + content.strip() + ' ' + eos_token.
static int render_llama2(const hl_chat_template *t, const chat_input *in, builder *b, hl_error *err) {
    int first = in->roles[0] == ROLE_SYSTEM ? 1 : 0;
    int rc = check_alternation(in, first, false, err);
    for (int i = first; rc == HL_OK && i < in->n; i++) rc = only_user_assistant(in, i, err);
    if (rc != HL_OK) return rc;
    for (int i = first; i < in->n; i++) {
        const char *c = in->msgs[i].content;
        if (in->roles[i] == ROLE_USER) {
            llama2_user(t, i == first && first == 1 ? in->msgs[0].content : NULL, c, b);
            continue;
        }
        tmpl(b, " ");
        content_stripped(b, c);
        tmpl(b, " ");
        tmpl(b, t->eos);
    }
    return HL_OK;
}

// gemma (gemma-2b-it, gemma-2, Gemma 3): '<start_of_turn>' + ('model' | 'user') + '\n' +
// content | trim + '<end_of_turn>\n'. A leading system message is folded into the first user
// turn as system + '\n\n' (Gemma 3's template; gemma-2b-it and gemma-2 raise instead).
static int render_gemma(const hl_chat_template *t, const chat_input *in, builder *b, hl_error *err) {
    int first = in->roles[0] == ROLE_SYSTEM ? 1 : 0;
    int rc = check_alternation(in, first, false, err);
    for (int i = first; rc == HL_OK && i < in->n; i++) rc = only_user_assistant(in, i, err);
    if (rc != HL_OK) return rc;
    tmpl(b, t->bos);
    for (int i = first; i < in->n; i++) {
        tmpl(b, in->roles[i] == ROLE_ASSISTANT ? "<start_of_turn>model\n" : "<start_of_turn>user\n");
        if (i == first && first == 1) {
            content(b, in->msgs[0].content, strlen(in->msgs[0].content));
            tmpl(b, "\n\n");
        }
        content_stripped(b, in->msgs[i].content);
        tmpl(b, "<end_of_turn>\n");
    }
    if (in->agp) tmpl(b, "<start_of_turn>model\n");
    return HL_OK;
}

static int reject_tool(const chat_input *in, hl_error *err) {
    for (int i = 0; i < in->n; i++) {
        if (in->roles[i] == ROLE_TOOL)
            return hl_errorf(err, HL_ERR_INVAL,
                             "message %d: this template has no tool role (its Jinja source would "
                             "drop the message)", i);
    }
    return HL_OK;
}

// phi3 (Phi-3-mini-4k-instruct; Phi-3.5 skips an empty system message): '<|role|>\n' + content +
// '<|end|>\n'; then '<|assistant|>\n' with add_generation_prompt, else eos_token.
static int render_phi3(const hl_chat_template *t, const chat_input *in, builder *b, hl_error *err) {
    int rc = reject_tool(in, err);
    if (rc != HL_OK) return rc;
    for (int i = 0; i < in->n; i++) {
        const char *c = in->msgs[i].content;
        if (in->roles[i] == ROLE_SYSTEM && t->skip_empty_system && c[0] == '\0') continue;
        tmpl(b, "<|");
        tmpl(b, role_names[in->roles[i]]);
        tmpl(b, "|>\n");
        content(b, c, strlen(c));
        tmpl(b, "<|end|>\n");
    }
    tmpl(b, in->agp ? "<|assistant|>\n" : t->eos);
    return HL_OK;
}

// zephyr (zephyr-7b-beta): '<|role|>\n' + content + eos_token + '\n'; '<|assistant|>\n' after
// the last message with add_generation_prompt.
static int render_zephyr(const hl_chat_template *t, const chat_input *in, builder *b, hl_error *err) {
    int rc = reject_tool(in, err);
    if (rc != HL_OK) return rc;
    for (int i = 0; i < in->n; i++) {
        const char *c = in->msgs[i].content;
        tmpl(b, "<|");
        tmpl(b, role_names[in->roles[i]]);
        tmpl(b, "|>\n");
        content(b, c, strlen(c));
        tmpl(b, t->eos);
        tmpl(b, "\n");
    }
    if (in->agp) tmpl(b, "<|assistant|>\n");
    return HL_OK;
}

typedef struct formatter {
    const char *name;
    render_fn render;
    const char *bos, *eos; // the family's usual BOS/EOS text
    const char *eot;       // the turn-ending text; NULL: the EOS text
    const char *eot2;      // a second stop text or NULL
    bool adds_bos;
} formatter;

static const formatter formatters[] = {
    {"llama3", render_llama3, "<|begin_of_text|>", "<|eot_id|>", "<|eot_id|>", NULL, true},
    {"llama3.1", render_llama31, "<|begin_of_text|>", "<|eot_id|>", "<|eot_id|>", "<|eom_id|>", true},
    {"chatml", render_chatml, "<|im_start|>", "<|im_end|>", "<|im_end|>", NULL, false},
    {"mistral-v1", render_mistral_v1, "<s>", "</s>", NULL, NULL, true},
    {"mistral-v3", render_mistral_v3, "<s>", "</s>", NULL, NULL, true},
    {"llama2", render_llama2, "<s>", "</s>", NULL, NULL, true},
    {"gemma", render_gemma, "<bos>", "<eos>", "<end_of_turn>", NULL, true},
    {"phi3", render_phi3, "<s>", "<|endoftext|>", "<|end|>", "<|endoftext|>", false},
    {"zephyr", render_zephyr, "<s>", "</s>", NULL, NULL, false},
};

static const formatter *find_formatter(const char *name) {
    for (size_t i = 0; i < sizeof(formatters) / sizeof(formatters[0]); i++) {
        if (strcmp(formatters[i].name, name) == 0) return &formatters[i];
    }
    return NULL;
}

// ---- detection ----

static bool has(const char *src, const char *marker) { return strstr(src, marker) != NULL; }

static int unsupported(hl_error *err, const char *what) {
    return hl_errorf(err, HL_ERR_UNSUPPORTED,
                     "unsupported chat template (%s); choose a built-in one with "
                     "--chat-template NAME: " HL_CHAT_NAMES, what);
}

static int detect_inst(const char *src, const char **name, hl_error *err) {
    if (has(src, "<<SYS>>")) {
        if (!has(src, "bos_token + '[INST] '") || !has(src, "content.strip()"))
            return unsupported(err, "a Llama 2 [INST] <<SYS>> variant that llama2 does not match");
        *name = "llama2";
        return HL_OK;
    }
    if (has(src, "' [INST] '")) {
        *name = "mistral-v1";
        return HL_OK;
    }
    if (has(src, "\"[INST] \"") && has(src, "+ \"[/INST]\"")) {
        *name = "mistral-v3";
        return HL_OK;
    }
    return unsupported(err, "an [INST] variant other than mistral-v1, mistral-v3 or llama2");
}

int hl_chat_detect(const char *src, const char **name, hl_error *err) {
    *name = NULL;
    if (!src || !src[0]) return unsupported(err, "the model has no tokenizer.chat_template");
    if (has(src, "<|im_start|>")) {
        *name = "chatml";
    } else if (has(src, "<|start_header_id|>")) {
        *name = has(src, "Cutting Knowledge Date") ? "llama3.1" : "llama3";
    } else if (has(src, "<start_of_turn>")) {
        *name = "gemma";
    } else if (has(src, "<|user|>") && has(src, "<|end|>")) {
        if (!has(src, "<|system|>"))
            return unsupported(err, "a Phi-3 variant without a system role");
        *name = "phi3";
    } else if (has(src, "<|user|>") && has(src, "eos_token")) {
        *name = "zephyr";
    } else if (has(src, "[INST]")) {
        return detect_inst(src, name, err);
    } else {
        return unsupported(err, "no known markers");
    }
    return HL_OK;
}

// Decodes a Jinja string literal's body from s up to end (exclusive) into a heap string, or NULL
// when it holds a quote or a Jinja delimiter (then it is not one plain literal).
static char *literal_text(const char *s, const char *end) {
    char *out = hl_xmalloc((size_t)(end - s) + 1);
    size_t n = 0;
    for (; s < end; s++) {
        char c = *s;
        if (c == '\'' || c == '"' || c == '{' || c == '}') {
            free(out);
            return NULL;
        }
        if (c == '\\' && s + 1 < end) {
            c = *++s;
            if (c == 'n') c = '\n';
            else if (c == 't') c = '\t';
        }
        out[n++] = c;
    }
    out[n] = '\0';
    return out;
}

// The default system prompt of a ChatML template: the first literal
// '<|im_start|>system\n...<|im_end|>' (SmolLM2, Qwen2, Qwen2.5 write it for conversations
// without a system message), or NULL.
static char *chatml_default_system(const char *src) {
    static const char head[] = "<|im_start|>system";
    for (const char *p = strstr(src, head); p; p = strstr(p + 1, head)) {
        const char *q = p + strlen(head);
        if (*q == '\n') q += 1;
        else if (q[0] == '\\' && q[1] == 'n') q += 2;
        else continue;
        const char *end = strstr(q, "<|im_end|>");
        if (!end) return NULL;
        char *text = literal_text(q, end);
        if (text) return text;
    }
    return NULL;
}

// Applies what the Jinja source says beyond the formatter's name.
static void read_variant(hl_chat_template *t, const char *src) {
    if (strcmp(t->fmt->name, "chatml") == 0) {
        t->default_system = chatml_default_system(src);
        t->no_tool = has(src, "<tool_response>");
    }
    if (strcmp(t->fmt->name, "phi3") == 0) t->skip_empty_system = has(src, "'system' and message['content']");
    if (strcmp(t->fmt->name, "llama3.1") == 0 && has(src, "strftime_now")) {
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        strftime(t->date, sizeof(t->date), "%d %b %Y", &tm);
    }
}

hl_chat_template *hl_chat_template_create(const hl_chat_template_params *p, hl_error *err) {
    const char *name = p->name;
    if (!name && hl_chat_detect(p->jinja, &name, err) != HL_OK) return NULL;
    const formatter *fmt = find_formatter(name);
    if (!fmt) {
        hl_errorf(err, HL_ERR_INVAL, "unknown chat template '%s'; built-in names: " HL_CHAT_NAMES,
                  name);
        return NULL;
    }
    hl_chat_template *t = hl_xcalloc(1, sizeof(*t));
    t->fmt = fmt;
    t->bos = hl_xstrdup(p->bos_text ? p->bos_text : fmt->bos);
    t->eos = hl_xstrdup(p->eos_text ? p->eos_text : fmt->eos);
    snprintf(t->date, sizeof(t->date), "26 Jul 2024");
    if (!p->name && p->jinja) read_variant(t, p->jinja);
    t->stops[0] = fmt->eot ? fmt->eot : t->eos;
    t->stops[1] = fmt->eot2;
    return t;
}

void hl_chat_template_free(hl_chat_template *t) {
    if (!t) return;
    free(t->bos);
    free(t->eos);
    free(t->default_system);
    free(t);
}

const char *hl_chat_template_name(const hl_chat_template *t) { return t->fmt->name; }

const char *hl_chat_template_stop_text(const hl_chat_template *t, int i) {
    if (i < 0 || i >= 2) return NULL;
    return t->stops[i];
}

bool hl_chat_template_adds_bos(const hl_chat_template *t) { return t->fmt->adds_bos; }

// ---- render ----

static int parse_roles(const hl_chat_message *msgs, int n, enum role *roles, hl_error *err) {
    for (int i = 0; i < n; i++) {
        if (!msgs[i].role || !msgs[i].content)
            return hl_errorf(err, HL_ERR_INVAL, "message %d: role and content must be set", i);
        int r = -1;
        for (int k = 0; k < 4; k++) {
            if (strcmp(msgs[i].role, role_names[k]) == 0) r = k;
        }
        if (r < 0)
            return hl_errorf(err, HL_ERR_INVAL,
                             "message %d: unknown role '%.32s' (expected system, user, assistant "
                             "or tool)", i, msgs[i].role);
        roles[i] = (enum role)r;
    }
    return HL_OK;
}

int hl_chat_render(const hl_chat_template *t, const hl_chat_message *msgs, int n_msgs,
                   bool add_generation_prompt, hl_chat_prompt *out, hl_error *err) {
    if (n_msgs < 1 || !msgs) return hl_errorf(err, HL_ERR_INVAL, "a chat needs at least one message");
    enum role *roles = hl_xmalloc((size_t)n_msgs * sizeof(*roles));
    builder b = {0};
    int rc = parse_roles(msgs, n_msgs, roles, err);
    if (rc != HL_OK) goto fail;
    chat_input in = {.msgs = msgs, .roles = roles, .n = n_msgs, .agp = add_generation_prompt};
    rc = t->fmt->render(t, &in, &b, err);
    if (rc != HL_OK) goto fail;
    free(roles);
    if (!b.buf) b.buf = hl_xcalloc(1, 1);
    *out = (hl_chat_prompt){.text = b.buf, .len = b.len, .segs = b.segs, .n_segs = b.n_segs};
    return HL_OK;
fail:
    free(roles);
    builder_free(&b);
    return rc;
}

void hl_chat_prompt_free(hl_chat_prompt *p) {
    if (!p) return;
    free(p->text);
    free(p->segs);
    memset(p, 0, sizeof(*p));
}
