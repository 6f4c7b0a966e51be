// The pause process in C, run from an ELF constructor before the Go
// runtime starts (as libcontainer's nsexec does for `orch init`), so a
// pod's pause process costs a few pages of memory instead of a whole Go
// runtime with every package's init. See pause.go for the protocol.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define READY_FD 3
#define MAX_CMDLINE 4096
#define MAX_ARGS 8

static void report(const char *msg)
{
	ssize_t left = (ssize_t)strlen(msg);
	while (left > 0) {
		ssize_t n = write(READY_FD, msg, (size_t)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		msg += n;
		left -= n;
	}
	close(READY_FD);
}

// fail reports "pause: MSG", then ` "QUOTED"` and ": DETAIL" when given,
// and exits.
static void fail(const char *msg, const char *quoted, const char *detail)
{
	char out[512];
	int n = snprintf(out, sizeof(out), "pause: %s", msg);
	if (quoted != NULL && n >= 0 && (size_t)n < sizeof(out))
		n += snprintf(out + n, sizeof(out) - (size_t)n, " \"%s\"", quoted);
	if (detail != NULL && n >= 0 && (size_t)n < sizeof(out))
		snprintf(out + n, sizeof(out) - (size_t)n, ": %s", detail);
	report(out);
	_exit(1);
}

// pause_main never returns. argv holds the arguments after "pause".
static void pause_main(int argc, char **argv)
{
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "-hostname") == 0) {
			if (i + 1 >= argc)
				fail("-hostname needs a value", NULL, NULL);
			i++;
			if (sethostname(argv[i], strlen(argv[i])) != 0)
				fail("set hostname", argv[i], strerror(errno));
		} else {
			fail("unknown argument", argv[i], NULL);
		}
	}

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
		fail("block signals", NULL, strerror(errno));
	report("ok");

	for (;;) {
		int sig = sigwaitinfo(&set, NULL);
		if (sig < 0)
			continue;
		if (sig != SIGCHLD)
			_exit(0);
		// Orphans of a shared PID namespace are reparented to us as
		// its PID 1: collect every exited child.
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
	}
}

// orch_pause_check runs before main in every orch process: it reads the
// command line and takes over only when the first argument is "pause".
__attribute__((constructor)) static void orch_pause_check(void)
{
	static char buf[MAX_CMDLINE];
	char *argv[MAX_ARGS];
	int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	ssize_t len = 0, n;
	while (len < (ssize_t)sizeof(buf) - 1 &&
	       (n = read(fd, buf + len, sizeof(buf) - 1 - (size_t)len)) > 0)
		len += n;
	close(fd);
	buf[len] = '\0';

	int argc = 0;
	ssize_t off = 0;
	for (; off < len && argc < MAX_ARGS; off += (ssize_t)strlen(buf + off) + 1)
		argv[argc++] = buf + off;
	if (argc < 2 || strcmp(argv[1], "pause") != 0)
		return;
	if (off < len)
		fail("too many arguments", NULL, NULL);
	pause_main(argc - 2, argv + 2);
}
