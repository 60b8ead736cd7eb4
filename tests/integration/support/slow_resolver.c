// Test-only getaddrinfo(), loaded into the faultline binary with LD_PRELOAD by the integration
// tests: a resolver that is slow or fails on demand, with no network and no change to
// /etc/resolv.conf. (Pointing glibc at a dead name server is not reliable: depending on the
// sandbox, its queries fail at once or hang for the resolver's full timeout.)
//
//   FLTEST_DNS_SLOW=a,b     these names take FLTEST_DNS_DELAY_MS (default 2000) ms to answer
//   *.invalid               never resolves (EAI_NONAME), as RFC 6761 says, without asking DNS
//   FLTEST_DNS_LOG=path     one line "start NAME" before and "end NAME" after each lookup
//
// Every other name, and a slow one after its delay, goes to the real getaddrinfo().
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef int (*getaddrinfo_fn)(const char*, const char*, const struct addrinfo*,
                              struct addrinfo**);

static void note(const char* what, const char* node) {
  const char* path = getenv("FLTEST_DNS_LOG");
  if (!path || !*path) return;
  char line[512];
  int n = snprintf(line, sizeof line, "%s %s\n", what, node);
  if (n <= 0 || (size_t)n >= sizeof line) return;
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;
  ssize_t w = write(fd, line, (size_t)n); // one write with O_APPEND: lines never interleave
  (void)w;
  close(fd);
}

static int listed(const char* list, const char* node) {
  size_t len = strlen(node);
  for (const char* p = list; p && *p;) {
    const char* comma = strchr(p, ',');
    size_t n = comma ? (size_t)(comma - p) : strlen(p);
    if (n == len && strncmp(p, node, n) == 0) return 1;
    p = comma ? comma + 1 : NULL;
  }
  return 0;
}

static int ends_with(const char* s, const char* suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

int getaddrinfo(const char* node, const char* service, const struct addrinfo* hints,
                struct addrinfo** res) {
  getaddrinfo_fn real = (getaddrinfo_fn)dlsym(RTLD_NEXT, "getaddrinfo");
  if (!node) return real(node, service, hints, res);
  note("start", node);
  if (listed(getenv("FLTEST_DNS_SLOW"), node)) {
    const char* ms = getenv("FLTEST_DNS_DELAY_MS");
    long delay = ms ? atol(ms) : 2000;
    struct timespec ts = {delay / 1000, (delay % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
  }
  int rc = ends_with(node, ".invalid") ? EAI_NONAME : real(node, service, hints, res);
  note("end", node);
  return rc;
}
