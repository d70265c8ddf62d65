/* A plugin in plain C99 without the SDK: proof that plugin.h alone is enough.
 * Config: {"path": "FILE", "fail_create": bool, "retry_create_until": "FILE",
 *          "status": "ok|retry|fail|stop",
 *          "retries_before_ok": N}
 * Appends one line per change set to FILE: "TYPE RESOURCE NS/NAME CHANGES
 * PADDING_OK", so tests can check exactly what crossed the ABI.
 * Built twice: as c_recorder (KUBETRAIL_CAP_BATCH) and, with NO_CAP_BATCH, as
 * c_recorder_single, which fails any call carrying more than one change set
 * (the host must not batch for a plugin that did not ask for it). */
#include <kubetrail/plugin.h>
#include <stdlib.h>

typedef struct recorder {
  const kubetrail_host_api* host;
  void* host_ctx;
  char path[512];
  int32_t status;
  int retries_before_ok;
  int calls;
  int32_t metric;
} recorder;

/* A deliberately tiny JSON string lookup: enough for this test config. */
static int find_string(const char* json, const char* key, char* out, size_t cap) {
  char pattern[64];
  const char *p, *end;
  size_t n;
  snprintf(pattern, sizeof pattern, "\"%s\":\"", key);
  p = strstr(json, pattern);
  if (!p) return 0;
  p += strlen(pattern);
  end = strchr(p, '"');
  if (!end) return 0;
  n = (size_t)(end - p);
  if (n >= cap) n = cap - 1;
  memcpy(out, p, n);
  out[n] = 0;
  return 1;
}

static int find_int(const char* json, const char* key, int* out) {
  char pattern[64];
  const char* p;
  snprintf(pattern, sizeof pattern, "\"%s\":", key);
  p = strstr(json, pattern);
  if (!p) return 0;
  *out = atoi(p + strlen(pattern));
  return 1;
}

static int32_t rec_create(const char* config, size_t len, const kubetrail_host_api* host, void* host_ctx, void** out,
                          kubetrail_error* err) {
  recorder* r;
  char status[16] = "ok";
  (void)len;
  if (strstr(config, "\"fail_create\":true")) {
    kubetrail_error_set(err, "cannot open %s: permission denied (as configured)", "the test resource");
    return KUBETRAIL_FAIL;
  }
  {
    /* create answers RETRY (transient) while this file does not exist */
    char until[512];
    FILE* probe;
    if (find_string(config, "retry_create_until", until, sizeof until)) {
      probe = fopen(until, "r");
      if (!probe) {
        kubetrail_error_set(err, "%s not there yet", until);
        return KUBETRAIL_RETRY;
      }
      fclose(probe);
    }
  }
  r = (recorder*)calloc(1, sizeof *r);
  if (!r) return KUBETRAIL_FAIL;
  r->host = host;
  r->host_ctx = host_ctx;
  if (!find_string(config, "path", r->path, sizeof r->path)) {
    free(r);
    kubetrail_error_set(err, "config.path missing");
    return KUBETRAIL_FAIL;
  }
  find_string(config, "status", status, sizeof status);
  r->status = strcmp(status, "retry") == 0  ? KUBETRAIL_RETRY
              : strcmp(status, "fail") == 0 ? KUBETRAIL_FAIL
              : strcmp(status, "stop") == 0 ? KUBETRAIL_STOP
                                            : KUBETRAIL_OK;
  find_int(config, "retries_before_ok", &r->retries_before_ok);
  r->metric = host->metric_define(host_ctx, KUBETRAIL_METRIC_COUNTER, "c_recorder_items_total", "items seen");
  *out = r;
  return KUBETRAIL_OK;
}

static void rec_destroy(void* instance) { free(instance); }

static int32_t rec_handle(void* instance, const kubetrail_batch* batch, kubetrail_batch_result* result,
                          kubetrail_error* err) {
  recorder* r = (recorder*)instance;
  FILE* f;
  size_t i, k;
#ifdef NO_CAP_BATCH
  if (batch->count > 1) {
    kubetrail_error_set(err, "a batch of %u change sets, without KUBETRAIL_CAP_BATCH", (unsigned)batch->count);
    return KUBETRAIL_FAIL;
  }
#endif
  r->calls++;
  if (r->calls <= r->retries_before_ok) {
    result->retry_after_ms = 1;
    kubetrail_error_set(err, "transient trouble, call %d", r->calls);
    return KUBETRAIL_RETRY;
  }
  if (r->status == KUBETRAIL_RETRY || r->status == KUBETRAIL_FAIL) {
    kubetrail_error_set(err, "configured to answer %s", r->status == KUBETRAIL_RETRY ? "retry" : "fail");
    return r->status;
  }
  f = fopen(r->path, "a");
  if (!f) {
    kubetrail_error_set(err, "cannot open %s", r->path);
    return KUBETRAIL_FAIL;
  }
  for (i = 0; i < batch->count; ++i) {
    const kubetrail_change_set* cs = batch->items[i];
    int padded = 1;
    for (k = 0; k < KUBETRAIL_JSON_PADDING; ++k)
      if (cs->json.ptr[cs->json.len + k] != 0) padded = 0;
    fprintf(f, "%u %s %s/%s %zu %s", cs->type, cs->resource.ptr, cs->object_namespace.ptr, cs->name.ptr,
            cs->change_count, padded ? "padded" : "UNPADDED");
    for (k = 0; k < cs->change_count; ++k) fprintf(f, " %u:%s", cs->changes[k]->op, cs->changes[k]->path.ptr);
    fputc('\n', f);
    r->host->metric_record(r->host_ctx, r->metric, 1.0);
  }
  fclose(f);
  {
    const char msg[] = "recorded a batch";
    if (r->host->log_enabled(r->host_ctx, KUBETRAIL_LOG_DEBUG))
      r->host->log(r->host_ctx, KUBETRAIL_LOG_DEBUG, msg, sizeof msg - 1);
  }
  return r->status;
}

static const kubetrail_plugin_descriptor descriptor = {
    sizeof(kubetrail_plugin_descriptor),
    KUBETRAIL_ABI_MAJOR,
    KUBETRAIL_ABI_MINOR,
    KUBETRAIL_THREADING_SERIAL,
#ifdef NO_CAP_BATCH
    0u,
    "c_recorder_single",
#else
    KUBETRAIL_CAP_BATCH,
    "c_recorder",
#endif
    "1.0.0",
    "records change sets to a file (test plugin in C99)",
    "{\"type\":\"object\",\"additionalProperties\":false,\"required\":[\"path\"],"
    "\"properties\":{\"path\":{\"type\":\"string\"},\"fail_create\":{\"type\":\"boolean\"},"
    "\"retry_create_until\":{\"type\":\"string\"},"
    "\"status\":{\"enum\":[\"ok\",\"retry\",\"fail\",\"stop\"]},"
    "\"retries_before_ok\":{\"type\":\"integer\",\"minimum\":0}}}",
    rec_create,
    rec_destroy,
    rec_handle,
    NULL};

KUBETRAIL_EXPORT const kubetrail_plugin_descriptor* kubetrail_plugin_entry_v1(uint32_t major, uint32_t minor) {
  (void)minor;
  return major == KUBETRAIL_ABI_MAJOR ? &descriptor : NULL;
}
