/* Test plugins that the host must refuse, one per compile definition:
 *   BAD_MAJOR      - descriptor claims ABI major 2
 *   TOO_NEW_MINOR  - descriptor claims a minor newer than the host's
 *   REFUSES_HOST   - the entry returns NULL
 *   NO_ENTRY       - exports no entry symbol at all
 *   NO_HANDLE      - descriptor too short to hold handle_batch
 *   OLD_MINOR      - built against ABI 1.1: loads, but may not be given
 *                    Snapshot change sets (inventory mode) */
#include <kubetrail/plugin.h>

#ifndef NO_ENTRY
static int32_t create(const char* c, size_t n, const kubetrail_host_api* h, void* hc, void** out, kubetrail_error* e) {
  (void)c;
  (void)n;
  (void)h;
  (void)hc;
  (void)e;
  *out = (void*)1;
  return KUBETRAIL_OK;
}
static void destroy(void* i) { (void)i; }
static int32_t handle(void* i, const kubetrail_batch* b, kubetrail_batch_result* r, kubetrail_error* e) {
  (void)i;
  (void)b;
  (void)r;
  (void)e;
  return KUBETRAIL_OK;
}

static kubetrail_plugin_descriptor descriptor = {sizeof(kubetrail_plugin_descriptor),
                                                 KUBETRAIL_ABI_MAJOR,
                                                 KUBETRAIL_ABI_MINOR,
                                                 0,
                                                 0,
                                                 "bad",
                                                 "0.0.1",
                                                 "a plugin the host must refuse",
                                                 NULL,
                                                 create,
                                                 destroy,
                                                 handle,
                                                 NULL};

KUBETRAIL_EXPORT const kubetrail_plugin_descriptor* kubetrail_plugin_entry_v1(uint32_t major, uint32_t minor) {
  (void)major;
  (void)minor;
#if defined(BAD_MAJOR)
  descriptor.abi_major = 2;
#elif defined(TOO_NEW_MINOR)
  descriptor.abi_minor = KUBETRAIL_ABI_MINOR + 1;
#elif defined(REFUSES_HOST)
  return NULL;
#elif defined(OLD_MINOR)
  descriptor.abi_minor = 1;
#elif defined(NO_HANDLE)
  descriptor.struct_size = (uint32_t)offsetof(kubetrail_plugin_descriptor, handle_batch);
#endif
  return &descriptor;
}
#else
KUBETRAIL_EXPORT int kubetrail_plugin_entry_v0(void) { return 0; }
#endif
