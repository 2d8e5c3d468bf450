// prompt: chat and completion prompts -> token ids (see prompt.h).
#include "server/prompt.h"

// Encodes text[from, to) as ordinary text (no special-token parsing).
static int encode_run(const hl_tokenizer *tok, const char *text, size_t from, size_t to,
                      hl_tokens *out, hl_error *err) {
    if (to <= from) return HL_OK;
    return hl_tokenizer_encode(tok, text + from, to - from, 0, out, err);
}

int hl_prompt_encode_rendered(const hl_tokenizer *tok, const hl_chat_prompt *p, bool add_bos,
                              hl_tokens *out, hl_error *err) {
    int32_t bos = hl_tokenizer_special_ids(tok).bos;
    if (add_bos && bos >= 0) hl_tokens_push(out, bos);
    size_t run = 0; // start of the text not yet encoded
    for (int i = 0; i < p->n_segs; i++) {
        const hl_chat_segment *s = &p->segs[i];
        if (!s->is_template) continue;
        size_t at = s->off, end = s->off + s->len;
        while (at < end) {
            size_t pos = 0, n = 0;
            int32_t id = hl_tokenizer_find_special(tok, p->text + at, end - at,
                                                   HL_TOKENIZER_PARSE_SPECIAL, &pos, &n);
            if (id < 0) break;
            if (encode_run(tok, p->text, run, at + pos, out, err) != HL_OK) return err ? err->code : HL_ERR_INVAL;
            hl_tokens_push(out, id);
            at += pos + n;
            run = at;
        }
    }
    if (encode_run(tok, p->text, run, p->len, out, err) != HL_OK) return err ? err->code : HL_ERR_INVAL;
    return HL_OK;
}

int hl_prompt_encode_chat(const hl_tokenizer *tok, const hl_chat_template *tmpl,
                          const hl_chat_message *msgs, int n_msgs, hl_tokens *out, hl_error *err) {
    hl_chat_prompt p;
    int rc = hl_chat_render(tmpl, msgs, n_msgs, true, &p, err);
    if (rc != HL_OK) return rc;
    bool add_bos = hl_tokenizer_adds_bos(tok) && !hl_chat_template_adds_bos(tmpl);
    rc = hl_prompt_encode_rendered(tok, &p, add_bos, out, err);
    hl_chat_prompt_free(&p);
    return rc;
}

int hl_prompt_encode_text(const hl_tokenizer *tok, const char *text, hl_tokens *out, hl_error *err) {
    unsigned flags = HL_TOKENIZER_ADD_SPECIAL | HL_TOKENIZER_PARSE_SPECIAL;
    return hl_tokenizer_encode(tok, text, strlen(text), flags, out, err);
}
