// libFuzzer harness for tokenizer/: arbitrary bytes through encode and decode.
//
// The byte-level BPE comes from the GGUF named by $HALYARD_FUZZ_MODEL, else the default model
// (models/SmolLM2-135M-Instruct.Q4_1.gguf), else the Llama 3 fixture folder
// (../shared/fixtures/llama3-tokenizer). A small SentencePiece vocabulary with byte fallback
// is built in memory. The first input byte picks the flags, the rest is the text.
// Checks: encode succeeds with ids in range; without special-token flags, decode gives the
// text back byte for byte (BPE: minus the bytes the vocabulary has no token for, which HF
// drops too; SentencePiece: after stripping the prefix space); the lossy decode is valid
// UTF-8 and equals what the streaming detokenizer emits.
// Build and run: sh tests/fuzz/build.sh (FUZZ_SECONDS=N to fuzz).
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "engine/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static hl_tokenizer *bpe, *spm;
static bool bpe_has_byte[256];

static hl_tokenizer *load_bpe(void) {
    hl_error err = {0};
    const char *path = getenv("HALYARD_FUZZ_MODEL");
    if (!path && access("models/SmolLM2-135M-Instruct.Q4_1.gguf", R_OK) == 0)
        path = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    if (path) {
        hl_gguf *g = hl_gguf_open(path, &err);
        hl_tokenizer *tok = g ? hl_tokenizer_create_from_gguf(g, &err) : NULL;
        hl_gguf_free(g);
        if (!tok) fprintf(stderr, "fuzz_tokenizer: %s: %s\n", path, err.msg);
        return tok;
    }
    const char *dir = "../shared/fixtures/llama3-tokenizer";
    char v[512], m[512], s[512];
    snprintf(v, sizeof v, "%s/vocab.json", dir);
    snprintf(m, sizeof m, "%s/merges.txt", dir);
    snprintf(s, sizeof s, "%s/special_tokens.json", dir);
    hl_tokenizer *tok = hl_tokenizer_create_from_hf_files(v, m, s, "llama-bpe", &err);
    if (!tok) fprintf(stderr, "fuzz_tokenizer: no model (set HALYARD_FUZZ_MODEL): %s\n", err.msg);
    return tok;
}

// <unk> <s> </s>, the 256 byte tokens, then a few words.
static hl_tokenizer *make_spm(void) {
    static const char *words[] = {"\xe2\x96\x81", "\xe2\x96\x81t", "\xe2\x96\x81th", "\xe2\x96\x81the",
                                  "e", "h", "t", "in", "\xe2\x96\x81in", "\xe4\xbd\xa0", "<s>x"};
    enum { N_WORDS = sizeof words / sizeof words[0], N = 3 + 256 + N_WORDS };
    static char names[256][8];
    const char *tokens[N];
    int32_t types[N];
    float scores[N];
    static const char *specials[] = {"<unk>", "<s>", "</s>"};
    for (int i = 0; i < 3; i++) {
        tokens[i] = specials[i];
        types[i] = i == 0 ? HL_TOKEN_UNKNOWN : HL_TOKEN_CONTROL;
    }
    for (int b = 0; b < 256; b++) {
        snprintf(names[b], sizeof names[b], "<0x%02X>", b);
        tokens[3 + b] = names[b];
        types[3 + b] = HL_TOKEN_BYTE;
    }
    for (int i = 0; i < N_WORDS; i++) {
        tokens[259 + i] = words[i];
        types[259 + i] = HL_TOKEN_NORMAL;
    }
    for (int i = 0; i < N; i++) scores[i] = -(float)i;
    hl_tokenizer_spec sp = hl_tokenizer_default_spec();
    sp.model = HL_TOKENIZER_SPM;
    sp.n_tokens = N;
    sp.tokens = tokens;
    sp.token_types = types;
    sp.scores = scores;
    sp.unk_id = 0;
    sp.bos_id = 1;
    sp.eos_id = 2;
    sp.add_bos = true;
    return hl_tokenizer_create(&sp, NULL);
}

static void init(void) {
    bpe = load_bpe();
    spm = make_spm();
    if (!bpe || !spm) abort();
    for (int b = 0; b < 256; b++) {
        char u[4];
        int n = hl_utf8_encode(hl_unicode_byte_to_cp((uint8_t)b), u);
        bpe_has_byte[b] = hl_tokenizer_token_id(bpe, u, (size_t)n) >= 0;
    }
}

// The lossy decode is valid UTF-8 and equals the stream's output.
static void check_stream(const hl_tokenizer *tok, const hl_tokens *ids, unsigned flags) {
    char *want;
    size_t want_len;
    if (hl_tokenizer_decode(tok, ids->ids, ids->n, flags | HL_TOKENIZER_VALID_UTF8, &want, &want_len,
                            NULL) != HL_OK)
        abort();
    if (!hl_utf8_valid((const uint8_t *)want, want_len)) abort();
    hl_tokenizer_stream *s = hl_tokenizer_stream_create(tok, flags);
    size_t at = 0;
    for (size_t i = 0; i <= ids->n; i++) {
        const char *piece;
        size_t n;
        if (i < ids->n && hl_tokenizer_stream_push(s, ids->ids[i], &piece, &n, NULL) != HL_OK) abort();
        if (i == ids->n) hl_tokenizer_stream_finish(s, &piece, &n);
        if (at + n > want_len || memcmp(want + at, piece, n) != 0) abort();
        at += n;
    }
    if (at != want_len) abort();
    hl_tokenizer_stream_free(s);
    free(want);
}

static void check(const hl_tokenizer *tok, const uint8_t *text, size_t len, unsigned flags,
                  bool is_bpe) {
    hl_tokens ids = {0};
    if (hl_tokenizer_encode(tok, (const char *)text, len, flags, &ids, NULL) != HL_OK) abort();
    for (size_t i = 0; i < ids.n; i++) {
        if (ids.ids[i] < 0 || ids.ids[i] >= hl_tokenizer_n_tokens(tok)) abort();
    }
    unsigned dflags = is_bpe ? 0 : HL_TOKENIZER_STRIP_SPACE;
    char *back;
    size_t n;
    if (hl_tokenizer_decode(tok, ids.ids, ids.n, dflags, &back, &n, NULL) != HL_OK) abort();
    // SentencePiece spells spaces '▁', so a literal '▁' in the text comes back as a space.
    bool exact = is_bpe || !memmem(text, len, "\xe2\x96\x81", 3);
    if (exact && !(flags & (HL_TOKENIZER_PARSE_SPECIAL | HL_TOKENIZER_ADD_SPECIAL))) {
        size_t k = 0;
        for (size_t i = 0; i < len; i++) {
            if (is_bpe && !bpe_has_byte[text[i]]) continue;
            if (k >= n || (uint8_t)back[k++] != text[i]) abort();
        }
        if (k != n) abort();
    }
    free(back);
    check_stream(tok, &ids, dflags);
    hl_tokens_free(&ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!bpe) init();
    if (size == 0) return 0;
    unsigned flags = data[0] & (HL_TOKENIZER_ADD_SPECIAL | HL_TOKENIZER_PARSE_SPECIAL);
    check(bpe, data + 1, size - 1, flags, true);
    check(spm, data + 1, size - 1, flags, false);
    return 0;
}
