/*
 * kubetrail/plugin.h - the C ABI between the kubetrail host and handler
 * plugins. This header is the whole contract: a plugin author needs nothing
 * else (the C++ SDK in sdk/ is a convenience over it, not a requirement).
 *
 * Pure C99, no C++ in it, usable from C, C++, Rust, Go (cgo), Zig...
 *
 * ---------------------------------------------------------------------------
 * How a plugin is loaded
 * ---------------------------------------------------------------------------
 *  1. The host dlopen()s the shared object with RTLD_NOW | RTLD_LOCAL and
 *     never unloads it (RTLD_NODELETE): Go and Rust runtimes and TLS
 *     destructors do not survive dlclose().
 *  2. It calls the one exported entry symbol
 *         kubetrail_plugin_entry_v1(host_abi_major, host_abi_minor)
 *     which returns a pointer to a static descriptor owned by the plugin, or
 *     NULL to refuse a host it cannot work with. The ABI major version is
 *     part of the symbol's name, so one .so may export _v1 and _v2 during a
 *     migration.
 *  3. Version rule: descriptor.abi_major must equal the host's major, and
 *     descriptor.abi_minor must be <= the host's minor (a plugin built
 *     against a newer header than the host may use things the host lacks).
 *  4. The host copies the descriptor into a zeroed struct of its own size,
 *     taking descriptor.struct_size bytes, and refuses a plugin whose
 *     required function pointers do not lie inside the declared size.
 *  5. For each [[handlers]] entry naming the plugin, the host validates the
 *     handler's `config` (as JSON) against descriptor.config_schema and then
 *     calls create(). Many instances of one plugin may exist at once: keep
 *     all state in the instance, none in globals.
 *
 * ---------------------------------------------------------------------------
 * Compatibility rules (why every struct starts with struct_size)
 * ---------------------------------------------------------------------------
 *  - Every struct crossing the boundary starts with `uint32_t struct_size`,
 *    set by whoever fills the struct to sizeof() as it knows it.
 *  - Structs only ever grow at the end. A reader must check that a member
 *    lies inside struct_size before reading it (KUBETRAIL_HAS_MEMBER).
 *  - Enumerations are carried as fixed-width integers; unknown values must be
 *    tolerated (treat an unknown change type as "modified", say).
 *  - Exceptions, longjmp and panics must never cross this boundary.
 *
 * ---------------------------------------------------------------------------
 * Threading
 * ---------------------------------------------------------------------------
 *  - create, destroy and flush run on the host's control thread and never
 *    overlap handle_batch on the same instance.
 *  - handle_batch of an instance is called by one delivery thread at a time,
 *    and change sets for one object arrive in order. (A plugin may declare
 *    KUBETRAIL_THREADING_CONCURRENT to say it could take concurrent calls;
 *    this host does not make them, so SERIAL is what every plugin gets.)
 *  - Host services (kubetrail_host_api) may be called from any thread.
 *
 * ---------------------------------------------------------------------------
 * Process environment
 * ---------------------------------------------------------------------------
 *  - The host ignores SIGPIPE: writing to a closed pipe or socket fails with
 *    EPIPE instead of ending the process. Do not change process-wide state
 *    (signal dispositions, locale, working directory, environment).
 */
#ifndef KUBETRAIL_PLUGIN_H
#define KUBETRAIL_PLUGIN_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ABI version of this header. Bump MINOR for append-only additions, MAJOR
 * for anything else (and then also the entry symbol's suffix). */
#define KUBETRAIL_ABI_MAJOR 1
#define KUBETRAIL_ABI_MINOR 2
/* 1.1: kubetrail_change_set gained actor, catch_up, old/new objects.
 * 1.2: the change type KUBETRAIL_SNAPSHOT, and kubetrail_change_set gained
 *      snapshot_id, snapshot_index, snapshot_total. A host gives Snapshot
 *      change sets only to a plugin built against 1.2 or later. */

/* Bytes guaranteed readable after the end of kubetrail_change_set.json, so
 * that simdjson and similar parsers can parse it in place without a copy.
 * The padding bytes are zero. */
#define KUBETRAIL_JSON_PADDING 64

/* Symbol visibility: plugins should build with -fvisibility=hidden and
 * export only the entry symbol. */
#if defined(_WIN32)
#define KUBETRAIL_EXPORT __declspec(dllexport)
#else
#define KUBETRAIL_EXPORT __attribute__((visibility("default")))
#endif

/* True when `member` of the struct pointed to by `ptr` lies inside the
 * struct_size its writer declared: the only safe way to read a member that a
 * later minor version added. */
#define KUBETRAIL_HAS_MEMBER(ptr, type, member) \
  ((ptr)->struct_size >= offsetof(type, member) + sizeof(((type*)0)->member))

/* ------------------------------------------------------------------------ */
/* Results                                                                   */
/* ------------------------------------------------------------------------ */

/* What a plugin function returns. Carried as int32_t. */
enum kubetrail_status_code {
  KUBETRAIL_OK = 0,    /* delivered / done */
  KUBETRAIL_RETRY = 1, /* transient failure: the host retries with backoff,
                          or after kubetrail_batch_result.retry_after_ms */
  KUBETRAIL_FAIL = 2,  /* permanent failure: retrying will not help; the host
                          dead-letters the change sets with the error text,
                          and their route's chain ends here (the handlers
                          after this one do not get them). RETRY past the
                          handler's last attempt ends the same way. */
  KUBETRAIL_STOP = 3   /* success, and end the route's handler chain here for
                          these change sets (how a filter plugin drops them) */
};

/* Per-item status value meaning "the item takes the batch's status". */
#define KUBETRAIL_ITEM_UNSET (-1)

/* A host-owned buffer for an error message, passed to every plugin function
 * that can fail. Write a NUL-terminated UTF-8 message of at most
 * capacity - 1 bytes (kubetrail_error_set does it). Never free it, never keep
 * the pointer after the call returns. Never put secret values in it: the host
 * logs it. */
typedef struct kubetrail_error {
  uint32_t struct_size;
  char* message;   /* OWNERSHIP: host; valid during the call; starts as "" */
  size_t capacity; /* bytes available at message, NUL included; >= 256 */
} kubetrail_error;

/* printf-style helper that fills an error buffer safely (truncating). */
static inline void kubetrail_error_set(kubetrail_error* err, const char* fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static inline void kubetrail_error_set(kubetrail_error* err, const char* fmt, ...) {
  va_list ap;
  if (err == NULL || err->message == NULL || err->capacity == 0) return;
  va_start(ap, fmt);
  vsnprintf(err->message, err->capacity, fmt, ap);
  va_end(ap);
}

/* ------------------------------------------------------------------------ */
/* Change sets as the plugin sees them                                       */
/* ------------------------------------------------------------------------ */

/* A string view. ptr is never NULL: an absent value is "" with len 0. The
 * bytes are also NUL-terminated (ptr[len] == 0), for C string APIs.
 * OWNERSHIP: host; valid until the call that received it returns. */
typedef struct kubetrail_str {
  const char* ptr;
  size_t len;
} kubetrail_str;

/* kubetrail_change_set.type. Carried as uint32_t. */
enum kubetrail_change_type {
  KUBETRAIL_ADDED = 1,
  KUBETRAIL_MODIFIED = 2,
  KUBETRAIL_DELETED = 3,
  /* Since ABI 1.2. Not a change: the object as it is, one item of a
   * periodic or on-demand inventory ([[handlers]] inventory_every,
   * `kubetrail snapshot`), so that a receiver keeping a copy of the cluster
   * (a CMDB) can reconcile. new_object holds the object; snapshot_* say
   * which snapshot and where in it. Only a handler that asked for an
   * inventory gets them, and only when its plugin was built against 1.2
   * or later. */
  KUBETRAIL_SNAPSHOT = 4
};

/* kubetrail_field_change.op. Carried as uint32_t. */
enum kubetrail_field_op {
  KUBETRAIL_OP_ADD = 1,    /* new_json set, old_json "" */
  KUBETRAIL_OP_REMOVE = 2, /* old_json set, new_json "" */
  KUBETRAIL_OP_REPLACE = 3 /* both set */
};

/* One field-level change of a Modified change set. */
typedef struct kubetrail_field_change {
  uint32_t struct_size;
  uint32_t op;            /* enum kubetrail_field_op */
  kubetrail_str path;     /* e.g. "spec.template.spec.containers[name=web].image":
                             dotted; lists Kubernetes merges by key are
                             addressed by key, other lists by index ("[3]");
                             keys with dots are quoted: annotations["a.b/c"] */
  kubetrail_str old_json; /* the old value as minified JSON; "" for add.
                             Secret values are already redacted. */
  kubetrail_str new_json; /* the new value as minified JSON; "" for remove */
} kubetrail_field_change;

/* One change set: what changed on one object, in one event. The json member
 * carries everything, schema kubetrail.dev/v1: its JSON Schema (every field
 * and how ids and paths are formed) is installed beside this header's
 * package as share/kubetrail/schema/changeset.schema.json
 * (plugin-api/schema/ in the source). The other members are the parts most
 * plugins need, ready to use. */
typedef struct kubetrail_change_set {
  uint32_t struct_size;
  uint32_t type;                  /* enum kubetrail_change_type */
  kubetrail_str id;               /* the same for the same transition however
                                     often it is computed: use it to drop
                                     redeliveries (see the schema) */
  kubetrail_str cluster;          /* [cluster] name from the config */
  kubetrail_str group;            /* "" for the core group */
  kubetrail_str version;          /* "v1" */
  kubetrail_str resource;         /* plural, lower case: "deployments" */
  kubetrail_str kind;             /* "Deployment" */
  kubetrail_str object_namespace; /* "" for cluster-scoped objects */
  kubetrail_str name;
  kubetrail_str uid;
  kubetrail_str resource_version;
  kubetrail_str summary;     /* one human-readable line */
  kubetrail_str observed_at; /* RFC 3339 UTC with milliseconds */
  /* Field changes (Modified only; 0 for Added and Deleted).
   * OWNERSHIP: host; array and items valid until the call returns. */
  const kubetrail_field_change* const* changes;
  size_t change_count;
  /* The whole change set as JSON text, followed by at least
   * KUBETRAIL_JSON_PADDING readable zero bytes. */
  kubetrail_str json;
  /* Since ABI 1.1: read only where KUBETRAIL_HAS_MEMBER(cs,
   * kubetrail_change_set, member) (a 1.0 host does not write them). */
  kubetrail_str actor_manager;   /* the field manager that made the change
                                    (managedFields); "" when unknown */
  kubetrail_str actor_operation; /* "Update" or "Apply"; "" when unknown */
  kubetrail_str actor_time;      /* RFC 3339; "" when unknown */
  uint32_t catch_up;             /* 1: found by comparing a list with what
                                    kubetrail had (after a restart or a
                                    410); several changes may have
                                    coalesced into it. 0 otherwise */
  kubetrail_str old_object;      /* the object before, pruned and redacted,
                                    as JSON: Deleted, or Modified with [diff]
                                    include_objects; "" otherwise */
  kubetrail_str new_object;      /* the object after: Added, or Modified
                                    with include_objects; the object as it
                                    is: Snapshot; "" otherwise */
  /* Since ABI 1.2 (KUBETRAIL_HAS_MEMBER as above). Snapshot only; "" and 0
   * for the other types. A snapshot is every object routed to one handler
   * at one time: items 1..snapshot_total, each object once. A receiver
   * holding all of them may drop what it has that the snapshot lacks; one
   * interrupted (a restart) never completes, and a new snapshot, with a new
   * id, follows. */
  kubetrail_str snapshot_id; /* "HANDLER/STARTED_AT", STARTED_AT RFC 3339 */
  uint64_t snapshot_index;   /* 1-based place of this object in it */
  uint64_t snapshot_total;   /* objects in the snapshot */
} kubetrail_change_set;

/* The unit of delivery: change sets for one handler, in order.
 * OWNERSHIP: host; everything reachable from it is valid only until
 * handle_batch returns. Copy what you need to keep. */
typedef struct kubetrail_batch {
  uint32_t struct_size;
  const kubetrail_change_set* const* items;
  size_t count; /* >= 1 */
} kubetrail_batch;

/* Out-parameters of handle_batch, zeroed / pre-set by the host. */
typedef struct kubetrail_batch_result {
  uint32_t struct_size;
  /* With KUBETRAIL_RETRY: wait at least this long before retrying (e.g. a
   * server's Retry-After). 0 lets the host's backoff decide. */
  uint32_t retry_after_ms;
  /* Optional partial success: one entry per batch item, pre-filled by the
   * host with KUBETRAIL_ITEM_UNSET. A plugin may set entries to a
   * kubetrail_status_code; entries left UNSET take the returned status.
   * OWNERSHIP: host; item_count == batch->count. */
  int32_t* item_status;
  size_t item_count;
} kubetrail_batch_result;

/* ------------------------------------------------------------------------ */
/* Services the host offers the plugin                                       */
/* ------------------------------------------------------------------------ */

/* Log levels (host_api.log). Carried as int32_t. */
enum kubetrail_log_level {
  KUBETRAIL_LOG_TRACE = 0,
  KUBETRAIL_LOG_DEBUG = 1,
  KUBETRAIL_LOG_INFO = 2,
  KUBETRAIL_LOG_WARN = 3,
  KUBETRAIL_LOG_ERROR = 4
};

/* Metric kinds (host_api.metric_define). */
enum kubetrail_metric_kind {
  KUBETRAIL_METRIC_COUNTER = 0,  /* record() adds the value */
  KUBETRAIL_METRIC_GAUGE = 1,    /* record() sets the value */
  KUBETRAIL_METRIC_HISTOGRAM = 2 /* record() observes the value (seconds) */
};

/* A table of host functions. Every function takes the opaque host_ctx that
 * create() received: plugins never reference host symbols directly (link
 * plugins with -Wl,--no-undefined). All functions are thread-safe.
 * OWNERSHIP: host; the table and host_ctx stay valid until destroy(). */
typedef struct kubetrail_host_api {
  uint32_t struct_size;
  /* Write one log line, attributed to the handler instance. msg need not be
   * NUL-terminated. Never log secret values. */
  void (*log)(void* host_ctx, int32_t level, const char* msg, size_t len);
  /* Non-zero when `level` would be written: skip building costly messages. */
  int32_t (*log_enabled)(void* host_ctx, int32_t level);
  /* Define a metric; call only from create(). name: [a-z_][a-z0-9_]*, the
   * host prefixes it with kubetrail_plugin_ and labels it with the handler
   * name. Returns an id >= 0 for metric_record, or -1 on a bad name. */
  int32_t (*metric_define)(void* host_ctx, int32_t kind, const char* name, const char* help);
  /* Record a value for a metric id; cheap, for the hot path. */
  void (*metric_record)(void* host_ctx, int32_t metric_id, double value);
} kubetrail_host_api;

/* ------------------------------------------------------------------------ */
/* The plugin descriptor                                                     */
/* ------------------------------------------------------------------------ */

/* Capability bits (descriptor.capabilities).
 * KUBETRAIL_CAP_BATCH: handles batches > 1 usefully; without it the host
 *   sends one change set per call, whatever the handler's batch_max says.
 * KUBETRAIL_CAP_FLUSH: flush is implemented (informational: the host calls
 *   flush whenever the descriptor's flush pointer is set). */
#define KUBETRAIL_CAP_BATCH 0x1u
#define KUBETRAIL_CAP_FLUSH 0x2u

/* Threading modes (descriptor.threading). */
enum kubetrail_threading {
  KUBETRAIL_THREADING_SERIAL = 0,    /* one handle_batch at a time */
  KUBETRAIL_THREADING_CONCURRENT = 1 /* handle_batch is reentrant (this host
                                        still calls it serially) */
};

/* Why flush is called. This host flushes on config reload and at shutdown;
 * KUBETRAIL_FLUSH_PERIODIC is reserved and not sent (flush from
 * handle_batch when output must not wait). */
enum kubetrail_flush_reason { KUBETRAIL_FLUSH_PERIODIC = 0, KUBETRAIL_FLUSH_RELOAD = 1, KUBETRAIL_FLUSH_SHUTDOWN = 2 };

typedef struct kubetrail_plugin_descriptor {
  uint32_t struct_size;    /* sizeof(kubetrail_plugin_descriptor) */
  uint32_t abi_major;      /* KUBETRAIL_ABI_MAJOR the plugin was built with */
  uint32_t abi_minor;      /* KUBETRAIL_ABI_MINOR the plugin was built with */
  uint32_t threading;      /* enum kubetrail_threading */
  uint64_t capabilities;   /* KUBETRAIL_CAP_* bits */
  const char* name;        /* short name, [a-z0-9_-]+, e.g. "slack" */
  const char* version;     /* the plugin's own version, e.g. "1.2.0" */
  const char* description; /* one line */
  /* JSON Schema (draft 7) of the handler's `config` object, as JSON text.
   * The host validates every config against it before create(), so create()
   * may assume the shape is right. NULL means the plugin takes no config
   * (only an empty table is accepted). */
  const char* config_schema;

  /* Create one handler instance from its config (UTF-8 JSON object text,
   * config_len bytes, also NUL-terminated). Store host and host_ctx for
   * later calls. On success set *instance_out and return KUBETRAIL_OK; on
   * failure fill err and return KUBETRAIL_FAIL: the host shows the message
   * as is, naming the handler. Return KUBETRAIL_RETRY when the failure is
   * transient (a broker not reachable yet): the host calls create again
   * with the handler's retry policy (attempts, backoff) before it reports
   * the handler as not running. Control thread. REQUIRED. */
  int32_t (*create)(const char* config_json, size_t config_len, const kubetrail_host_api* host, void* host_ctx,
                    void** instance_out, kubetrail_error* err);

  /* Release an instance. Called once, after the last handle_batch/flush
   * returned. Control thread. REQUIRED. */
  void (*destroy)(void* instance);

  /* Deliver a batch of change sets. Return a kubetrail_status_code; on
   * RETRY or FAIL fill err. Delivery thread (see Threading). REQUIRED. */
  int32_t (*handle_batch)(void* instance, const kubetrail_batch* batch, kubetrail_batch_result* result,
                          kubetrail_error* err);

  /* Flush buffered output (on config reload and at shutdown).
   * Control thread. OPTIONAL: NULL, or outside struct_size, if unused. */
  int32_t (*flush)(void* instance, uint32_t reason, kubetrail_error* err);
} kubetrail_plugin_descriptor;

/* The entry symbol every plugin exports. Return a pointer to a static,
 * plugin-owned descriptor (it must stay valid for the life of the process),
 * or NULL to refuse a host whose ABI version the plugin cannot serve. */
typedef const kubetrail_plugin_descriptor* (*kubetrail_plugin_entry_v1_fn)(uint32_t host_abi_major,
                                                                           uint32_t host_abi_minor);

#define KUBETRAIL_PLUGIN_ENTRY_V1_SYMBOL "kubetrail_plugin_entry_v1"

KUBETRAIL_EXPORT const kubetrail_plugin_descriptor* kubetrail_plugin_entry_v1(uint32_t host_abi_major,
                                                                              uint32_t host_abi_minor);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* KUBETRAIL_PLUGIN_H */
