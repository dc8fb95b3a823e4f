/* run_cli.c: running the `arbor` binary from tests (run_cli.h). */
#include "run_cli.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static run_result R; /* one at a time; large buffers stay off the stack */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void drain(int fd, char *buf, size_t cap, size_t *n, bool *open) {
    char tmp[4096];
    ssize_t k = read(fd, tmp, sizeof tmp);
    if (k <= 0) {
        *open = false;
        return;
    }
    size_t take = (size_t)k < cap - 1 - *n ? (size_t)k : cap - 1 - *n;
    memcpy(buf + *n, tmp, take);
    *n += take;
    buf[*n] = 0;
}

run_result *run_cli(int timeout_s, const char *const *args) {
    const char *argv[64] = {ARBOR_CLI};
    int argc = 1;
    while (args[argc - 1]) {
        cr_assert_lt(argc, 63);
        argv[argc] = args[argc - 1];
        argc++;
    }
    argv[argc] = NULL;
    memset(&R, 0, sizeof R);
    int po[2], pe[2];
    cr_assert_eq(pipe(po), 0);
    cr_assert_eq(pipe(pe), 0);
    fflush(NULL);
    double t0 = now_s();
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int dn = open("/dev/null", O_RDONLY);
        dup2(dn, 0);
        dup2(po[1], 1);
        dup2(pe[1], 2);
        close(po[0]);
        close(pe[0]);
        execv(ARBOR_CLI, (char *const *)argv);
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    bool out_open = true, err_open = true;
    while (out_open || err_open) {
        struct pollfd fds[2] = {{.fd = out_open ? po[0] : -1, .events = POLLIN},
                                {.fd = err_open ? pe[0] : -1, .events = POLLIN}};
        int left_ms = (int)((t0 + timeout_s - now_s()) * 1000);
        if (left_ms <= 0 || poll(fds, 2, left_ms) == 0) {
            R.timed_out = true;
            kill(pid, SIGKILL);
            break;
        }
        if (fds[0].revents) drain(po[0], R.out, sizeof R.out, &R.n_out, &out_open);
        if (fds[1].revents) drain(pe[0], R.err, sizeof R.err, &R.n_err, &err_open);
    }
    close(po[0]);
    close(pe[0]);
    int status;
    struct rusage ru;
    cr_assert_eq(wait4(pid, &status, 0, &ru), pid);
    R.seconds = now_s() - t0;
    R.max_rss_kb = ru.ru_maxrss;
    R.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    R.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    return &R;
}
