// prompt: request text -> prompt token ids. Chat messages go through the model's chat template
// and are encoded by the segment contract of tokenizer/chat.h: special-token text is recognised
// only inside template markup, so message content can never open or close a turn; the text
// between two special tokens is encoded as one run, as Hugging Face encodes the joined string.
// A completions prompt is the caller's whole prompt: its special-token text is parsed (as vLLM
// and HF tokenizers do) and BOS is added where the model asks for it.
//
//   hl_tokens ids = {0};
//   hl_prompt_encode_chat(tok, tmpl, msgs, n_msgs, &ids, &err);
//   ... hl_tokens_free(&ids);
#pragma once

#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"

// Renders msgs with tmpl (add_generation_prompt on) and appends their ids to out. A BOS is
// prepended when the tokenizer adds one and the template did not write it. HL_ERR_INVAL for a
// conversation the template refuses (the message says why) or an encoding failure.
int hl_prompt_encode_chat(const hl_tokenizer *tok, const hl_chat_template *tmpl,
                          const hl_chat_message *msgs, int n_msgs, hl_tokens *out, hl_error *err);

// Encodes an already rendered prompt by the segment contract (see tokenizer/chat.h).
int hl_prompt_encode_rendered(const hl_tokenizer *tok, const hl_chat_prompt *p, bool add_bos,
                              hl_tokens *out, hl_error *err);

// Encodes a completions prompt: special tokens parsed, BOS as the model asks.
int hl_prompt_encode_text(const hl_tokenizer *tok, const char *text, hl_tokens *out, hl_error *err);
