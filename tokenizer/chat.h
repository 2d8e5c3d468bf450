// chat: chat templates as built-in formatters (no Jinja engine). A GGUF's
// tokenizer.chat_template (Jinja source) is matched to one of the built-in formatters by
// distinctive markers, or a formatter is named (--chat-template NAME); an unknown template is
// an error that lists the names, never a silently wrong prompt. Each formatter reproduces its
// model's own Jinja template byte for byte (tests/fixtures/tokenizer/chat_expect.json holds
// transformers' renderings) and fails with HL_ERR_INVAL where that template raises.
//
// Injection safety: a prompt is rendered as segments that say which bytes are template markup
// and which come from message content, so a user who types "<|eot_id|>" gets plain text, not a
// turn boundary. See hl_chat_prompt for the encoding contract.
//
//   hl_chat_template *t = hl_chat_template_create(&(hl_chat_template_params){.jinja = src}, &err);
//   hl_chat_message msgs[] = {{"system", "Be brief."}, {"user", "Hi"}};
//   hl_chat_prompt p;
//   if (hl_chat_render(t, msgs, 2, true, &p, &err) == HL_OK) { encode(&p); hl_chat_prompt_free(&p); }
//   hl_chat_template_free(t);
#pragma once

#include "common/hl.h"

// Built-in formatter names, as accepted by --chat-template and listed in errors.
#define HL_CHAT_NAMES "llama3, llama3.1, chatml, mistral-v1, mistral-v3, llama2, gemma, phi3, zephyr"

typedef struct hl_chat_template hl_chat_template;

typedef struct hl_chat_message {
    const char *role;    // "system", "user", "assistant" or "tool"; borrowed for the call
    const char *content; // UTF-8, NUL-terminated; borrowed for the call
} hl_chat_message;

// One run of the rendered prompt: bytes [off, off + len) of hl_chat_prompt.text.
typedef struct hl_chat_segment {
    size_t off;
    size_t len;
    bool is_template; // true: template markup; false: text taken from a message's content
} hl_chat_segment;

// A rendered prompt. Encoding contract (this is what keeps users from injecting turns):
//   - look for special-token text ("<|eot_id|>", "<|im_start|>", "<s>", ...) only inside
//     segments with is_template = true, and only where the whole token lies in one segment;
//   - everything else, content segments included, is ordinary text;
//   - the text between two special tokens is encoded as one run even when it spans template and
//     content segments (that is what Hugging Face does with the joined string, and encoding
//     segment by segment would change merges at the seams, e.g. " [INST] " + "Hi").
// Adjacent segments always differ in is_template; empty segments are never stored.
typedef struct hl_chat_prompt {
    char *text;            // owned: the whole prompt, NUL-terminated
    size_t len;            // strlen-equivalent length of text (content may hold no NUL)
    hl_chat_segment *segs; // owned, n_segs entries in text order, covering text exactly
    int n_segs;
} hl_chat_prompt;

typedef struct hl_chat_template_params {
    const char *name;     // built-in name (--chat-template); NULL: detect from jinja
    const char *jinja;    // the GGUF's tokenizer.chat_template; may be NULL when name is set
    const char *bos_text; // the vocabulary's BOS token text; NULL: the family's usual one
    const char *eos_text; // the vocabulary's EOS token text; NULL: the family's usual one
} hl_chat_template_params;

// Returns in *name the built-in formatter that renders the Jinja template src (static string),
// matched by markers as llama.cpp's llm_chat_detect_template does. HL_ERR_UNSUPPORTED, with a
// message listing HL_CHAT_NAMES, when src is NULL, empty or matches no formatter (also for
// known families' variants that a formatter would render differently, e.g. Mistral's
// pre-system-prompt template).
int hl_chat_detect(const char *src, const char **name, hl_error *err);

// Creates a template from params: p->name wins over p->jinja. Detection also picks up variant
// details from the Jinja source: a ChatML default system prompt (SmolLM2, Qwen2), Phi-3.5
// skipping an empty system message, Llama 3.2's current date (strftime_now) instead of Llama
// 3.1's fixed "26 Jul 2024". NULL + HL_ERR_INVAL for an unknown name, NULL +
// HL_ERR_UNSUPPORTED for an unmatched template; both messages list the names. Strings in p are
// copied. Free with hl_chat_template_free.
hl_chat_template *hl_chat_template_create(const hl_chat_template_params *p, hl_error *err);

void hl_chat_template_free(hl_chat_template *t); // accepts NULL

// The formatter's name (one of HL_CHAT_NAMES); static string.
const char *hl_chat_template_name(const hl_chat_template *t);

// Texts that end a turn, for the engine's stop tokens: i = 0 is the main one ("<|eot_id|>",
// "<|im_end|>", "<end_of_turn>", "<|end|>", or the EOS text for [INST] and zephyr templates);
// NULL once i is past the last. Owned by t.
const char *hl_chat_template_stop_text(const hl_chat_template *t, int i);

// True when rendered prompts begin with the BOS text, so the caller must not add another BOS.
bool hl_chat_template_adds_bos(const hl_chat_template *t);

// Renders msgs into *out (filled only on success; free with hl_chat_prompt_free).
// add_generation_prompt appends the assistant-turn opener where the template has one.
// HL_ERR_INVAL, with the reason, when: n_msgs < 1, a role is unknown or NULL content, the
// template raises for this conversation (roles not alternating user/assistant for llama2,
// mistral and gemma; a system message other than the first where it is folded into a user
// turn; tool messages for mistral-v3, which need tool-call ids this API does not carry), or the
// template would silently drop a message (tool messages for llama2, gemma, phi3, zephyr; a
// system message with no user turn for the templates that fold it).
int hl_chat_render(const hl_chat_template *t, const hl_chat_message *msgs, int n_msgs,
                   bool add_generation_prompt, hl_chat_prompt *out, hl_error *err);

// Frees out's buffers and zeroes it; accepts NULL and a zeroed prompt.
void hl_chat_prompt_free(hl_chat_prompt *p);
