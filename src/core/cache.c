/* cache.c: the per-user cache directory and atomic small-file I/O (see cache.h). */
#include "cache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

/* mkdir -p of path (modified in place, restored) */
static ar_status make_dirs(char *path) {
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p) continue;
        const char c = *p;
        *p = 0;
        const int rc = mkdir(path, 0755);
        const int err = errno;
        *p = c;
        if (rc != 0 && err != EEXIST)
            return ar_fail(AR_ERR_IO, "cannot create directory %.*s: %s", (int)(p - path), path,
                           strerror(err));
        if (!c) return AR_OK;
    }
}

ar_status ar_cache_dir(char *out, size_t cap) {
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int k;
    if (xdg && *xdg == '/')
        k = snprintf(out, cap, "%s/arbor", xdg);
    else if (home && *home)
        k = snprintf(out, cap, "%s/.cache/arbor", home);
    else
        return ar_fail(AR_ERR_IO, "cache: neither XDG_CACHE_HOME (absolute) nor HOME is set");
    if (k <= 0 || (size_t)k >= cap) return ar_fail(AR_ERR_IO, "cache: directory path too long");
    return make_dirs(out);
}

ar_status ar_cache_path(const char *name, char *out, size_t cap) {
    ar_status s = ar_cache_dir(out, cap);
    if (s != AR_OK) return s;
    const size_t len = strlen(out);
    int k = snprintf(out + len, cap - len, "/%s", name);
    if (k <= 0 || (size_t)k >= cap - len) return ar_fail(AR_ERR_IO, "cache: path too long");
    char *slash = strrchr(out, '/');
    if (slash > out + len) { /* a subdirectory */
        *slash = 0;
        s = make_dirs(out);
        *slash = '/';
    }
    return s;
}

ar_status ar_file_identity(const char *path, uint64_t *out) {
    struct stat st;
    if (stat(path, &st) != 0) return ar_fail(AR_ERR_IO, "%s: %s", path, strerror(errno));
    const uint64_t f[6] = {(uint64_t)st.st_dev,          (uint64_t)st.st_ino,
                           (uint64_t)st.st_size,         (uint64_t)st.st_mtim.tv_sec,
                           (uint64_t)st.st_mtim.tv_nsec, (uint64_t)st.st_ctim.tv_sec};
    *out = XXH64(f, sizeof f, 0);
    return AR_OK;
}

ar_status ar_write_file_atomic(const char *path, const void *data, size_t n) {
    char tmp[4096];
    int k = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    if (k <= 0 || (size_t)k >= sizeof tmp) return ar_fail(AR_ERR_IO, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return ar_fail(AR_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    const uint8_t *p = data;
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, p + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            const int err = errno;
            close(fd);
            unlink(tmp);
            return ar_fail(AR_ERR_IO, "%s: write failed: %s", tmp, strerror(err));
        }
        done += (size_t)w;
    }
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        const int err = errno;
        unlink(tmp);
        return ar_fail(AR_ERR_IO, "%s: cannot write: %s", path, strerror(err));
    }
    return AR_OK;
}

ar_status ar_read_small_file(const char *path, size_t max, char **out, size_t *n) {
    *out = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return ar_fail(AR_ERR_IO, "%s: %s", path, strerror(errno));
    char *buf = malloc(max + 2);
    if (!buf) {
        fclose(f);
        return ar_fail(AR_ERR_NOMEM, "%s: out of memory", path);
    }
    const size_t got = fread(buf, 1, max + 1, f);
    const bool err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return ar_fail(AR_ERR_IO, "%s: read error", path);
    }
    if (got > max) {
        free(buf);
        return ar_fail(AR_ERR_FORMAT, "%s: larger than %zu bytes", path, max);
    }
    buf[got] = 0;
    *out = buf;
    *n = got;
    return AR_OK;
}
