// log: one JSON line per request (see log.h).
#include "server/log.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static void add_str(cJSON *o, const char *k, const char *v) {
    if (v) cJSON_AddStringToObject(o, k, v);
    else cJSON_AddNullToObject(o, k);
}

static void add_ms(cJSON *o, const char *k, double v) {
    if (v >= 0) cJSON_AddNumberToObject(o, k, (double)(long long)(v * 1000.0) / 1000.0);
    else cJSON_AddNullToObject(o, k);
}

void hl_request_log_format(const hl_request_log *rec, hl_buf *out) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[96];
    snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "ts", ts);
    add_str(o, "id", rec->id);
    add_str(o, "method", rec->method);
    add_str(o, "path", rec->path);
    add_str(o, "model", rec->model);
    cJSON_AddNumberToObject(o, "status", rec->status);
    cJSON_AddNumberToObject(o, "key", rec->key);
    cJSON_AddNumberToObject(o, "prompt_tokens", rec->prompt_tokens);
    cJSON_AddNumberToObject(o, "completion_tokens", rec->completion_tokens);
    add_ms(o, "queue_ms", rec->queue_ms);
    add_ms(o, "ttft_ms", rec->ttft_ms);
    add_ms(o, "total_ms", rec->total_ms);
    add_str(o, "finish", rec->finish);
    add_str(o, "error", rec->error);
    char *s = cJSON_PrintUnformatted(o);
    hl_buf_puts(out, s);
    hl_buf_puts(out, "\n");
    cJSON_free(s);
    cJSON_Delete(o);
}

void hl_request_log_write(int fd, const hl_request_log *rec) {
    if (fd < 0) return;
    hl_buf b = {0};
    hl_request_log_format(rec, &b);
    ssize_t w = write(fd, b.data, b.len);
    (void)w;
    hl_buf_free(&b);
}
