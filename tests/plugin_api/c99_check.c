/* Compiled with -std=c99 -pedantic -Wall -Wextra -Werror: plugin.h must be
 * plain C99. Uses every helper so that they are checked too. */
#include <kubetrail/plugin.h>

int kubetrail_c99_check(void);
int kubetrail_c99_check(void) {
  char buf[32];
  kubetrail_error err;
  kubetrail_change_set cs;
  err.struct_size = sizeof err;
  err.message = buf;
  err.capacity = sizeof buf;
  kubetrail_error_set(&err, "%d", 42);
  memset(&cs, 0, sizeof cs);
  cs.struct_size = sizeof cs;
  return KUBETRAIL_HAS_MEMBER(&cs, kubetrail_change_set, json) && buf[0] == '4' ? 0 : 1;
}
