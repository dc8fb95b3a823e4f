/* test_install.c: the installed library, as an application sees it. `cmake --install` into a
 * temporary prefix, then: the files and the shared library's SONAME, only arbor_* symbols
 * exported (and every function of the installed header among them), examples/embed.c compiled
 * with `pkg-config --cflags --libs arbor` and run against the installed libarbor.so (plain and
 * speculative, text equal to llama.cpp's greedy reference), and the same program linked with the
 * static libarbor.a. */
#include <criterion/criterion.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "arbor.h"
#include "tests/util/refs.h"

typedef struct installed {
    char prefix[256];
    char libdir[512];
    char pc_env[600]; /* PKG_CONFIG_PATH=... */
} installed;

/* Runs a shell command; returns its exit status and, when out is given, its stdout. */
static int run(const char *cmd, char *out, size_t cap) {
    FILE *p = popen(cmd, "r");
    cr_assert(p, "popen: %s", cmd);
    size_t n = 0;
    char sink[4096];
    for (;;) {
        size_t k = out ? fread(out + n, 1, cap - 1 - n, p) : fread(sink, 1, sizeof sink, p);
        if (k == 0) break;
        if (out) n += k;
    }
    if (out) out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* CMAKE_INSTALL_LIBDIR as the build configured it ("lib", "lib/x86_64-linux-gnu", ...). */
static void configured_libdir(char *out, size_t cap) {
    FILE *f = fopen(ARBOR_BUILD_DIR "/CMakeCache.txt", "r");
    cr_assert(f, "no CMakeCache.txt in %s", ARBOR_BUILD_DIR);
    char line[1024];
    snprintf(out, cap, "lib");
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "CMAKE_INSTALL_LIBDIR:", 21)) continue;
        char *eq = strchr(line, '=');
        if (eq) {
            eq[strcspn(eq, "\r\n")] = 0;
            snprintf(out, cap, "%s", eq + 1);
        }
    }
    fclose(f);
}

static installed install(void) {
    installed in;
    snprintf(in.prefix, sizeof in.prefix, "/tmp/arbor-install-XXXXXX");
    cr_assert(mkdtemp(in.prefix), "mkdtemp");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cmake --install '%s' --prefix '%s' 2>&1", ARBOR_BUILD_DIR,
             in.prefix);
    char log[8192];
    cr_assert_eq(run(cmd, log, sizeof log), 0, "%s:\n%s", cmd, log);
    char rel[256];
    configured_libdir(rel, sizeof rel);
    cr_assert(rel[0] != '/', "CMAKE_INSTALL_LIBDIR %s is absolute", rel);
    snprintf(in.libdir, sizeof in.libdir, "%s/%s", in.prefix, rel);
    snprintf(in.pc_env, sizeof in.pc_env, "PKG_CONFIG_PATH='%s/pkgconfig'", in.libdir);
    return in;
}

static void uninstall(const installed *in) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", in->prefix);
    run(cmd, NULL, 0);
}

static bool exists(const char *dir, const char *name) {
    char path[1024];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0;
}

Test(install, files_soname_and_exported_symbols, .timeout = 300) {
    installed in = install();
    char inc[512], bin[512];
    snprintf(inc, sizeof inc, "%s/include", in.prefix);
    snprintf(bin, sizeof bin, "%s/bin", in.prefix);
    cr_expect(exists(inc, "arbor.h"));
    cr_expect(exists(bin, "arbor"));
    cr_expect(exists(in.libdir, "libarbor.a"));
    cr_expect(exists(in.libdir, "libarbor.so"));
    cr_expect(exists(in.libdir, "pkgconfig/arbor.pc"));
    char real[64], soname[64];
    snprintf(real, sizeof real, "libarbor.so.%d.%d.%d", ARBOR_VERSION_MAJOR, ARBOR_VERSION_MINOR,
             ARBOR_VERSION_PATCH);
    snprintf(soname, sizeof soname, "libarbor.so.%d", ARBOR_VERSION_MAJOR);
    cr_expect(exists(in.libdir, real), "no %s: the header's version and CMake's differ", real);
    cr_expect(exists(in.libdir, soname));

    char cmd[1024], out[1 << 16];
    snprintf(cmd, sizeof cmd, "readelf -d '%s/libarbor.so' | grep SONAME", in.libdir);
    cr_assert_eq(run(cmd, out, sizeof out), 0);
    cr_expect(strstr(out, soname), "%s", out);

    /* exported: exactly arbor_* */
    snprintf(cmd, sizeof cmd, "nm -D --defined-only '%s/libarbor.so' | awk '{print $3}'",
             in.libdir);
    static char exported[1 << 16]; /* "\n" + one name per line */
    exported[0] = '\n';
    cr_assert_eq(run(cmd, exported + 1, sizeof exported - 1), 0);
    memcpy(out, exported, sizeof out);
    int n_exported = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        cr_expect(!strncmp(line, "arbor_", 6), "exported symbol %s is not arbor_*", line);
        n_exported++;
    }

    /* every function the installed header declares is exported */
    char hdr[1024];
    snprintf(hdr, sizeof hdr, "%s/arbor.h", inc);
    size_t len;
    char *text = (char *)read_whole(hdr, &len);
    cr_assert(text);
    int n_declared = 0;
    for (char *p = strstr(text, "ARBOR_API "); p; p = strstr(p + 1, "ARBOR_API ")) {
        char *paren = strchr(p, '(');
        if (!paren || paren - p > 200) continue;
        char *end = paren;
        while (end > p && (isalnum((unsigned char)end[-1]) || end[-1] == '_')) end--;
        char name[128];
        snprintf(name, sizeof name, "\n%.*s\n", (int)(paren - end), end);
        if (strncmp(name + 1, "arbor_", 6)) continue; /* the macro's own definition */
        n_declared++;
        cr_expect(strstr(exported, name), "%.*s is declared but not exported", (int)(paren - end),
                  end);
    }
    free(text);
    cr_expect_gt(n_declared, 20);
    cr_expect_eq(n_exported, n_declared, "%d exported, %d declared", n_exported, n_declared);
    uninstall(&in);
}

/* The reference greedy continuation of case 0 ("Once upon a time"), plus embed's newline. */
static char *reference_text(const char *stem) {
    ref_file ref;
    cr_assert(ref_load(stem, &ref));
    cr_assert_str_eq(ref.cases[0].prompt, "Once upon a time");
    size_t n = ref.cases[0].greedy_text_len;
    char *s = malloc(n + 2);
    memcpy(s, ref.cases[0].greedy_text, n);
    s[n] = '\n';
    s[n + 1] = 0;
    ref_free(&ref);
    return s;
}

/* Runs the embed binary with LD_LIBRARY_PATH; returns its exit status, stdout in out. */
static int run_embed(const installed *in, const char *exe, const char *args, char *out,
                     size_t cap) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "LD_LIBRARY_PATH='%s' '%s' %s 2>'%s/stderr.txt'", in->libdir, exe,
             args, in->prefix);
    return run(cmd, out, cap);
}

static char *embed_stderr(const installed *in) {
    char path[512];
    size_t len;
    snprintf(path, sizeof path, "%s/stderr.txt", in->prefix);
    char *s = (char *)read_whole(path, &len);
    return s ? s : calloc(1, 1);
}

static void check_embed_runs(const installed *in, const char *exe) {
    char args[1024], out[8192];
    const char *stories = fixture("models/stories260K-f32.gguf");
    char *ref = reference_text("stories260K-f32");
    snprintf(args, sizeof args, "'%s' 'Once upon a time'", stories);
    cr_expect_eq(run_embed(in, exe, args, out, sizeof out), 0);
    cr_expect_str_eq(out, ref, "plain decoding: %s", out);

    /* speculative, with the verifier's own first layers: the same text */
    snprintf(args, sizeof args, "'%s' self:2", stories);
    cr_expect_eq(run_embed(in, exe, args, out, sizeof out), 0);
    cr_expect_str_eq(out, ref, "self:2: %s", out);
    free(ref);

    /* a separate drafter model for another verifier */
    ref = reference_text("llama2xs-260K-f32");
    snprintf(args, sizeof args, "'%s' '%s' 'Once upon a time'",
             fixture("models/llama2xs-260K-f32.gguf"), stories);
    cr_expect_eq(run_embed(in, exe, args, out, sizeof out), 0);
    cr_expect_str_eq(out, ref, "drafter model: %s", out);
    char *err = embed_stderr(in);
    cr_expect(strstr(err, "speculative verifications"), "stats on stderr: %s", err);
    free(err);
    free(ref);

    /* failures: a status and the library's message, no output */
    snprintf(args, sizeof args, "'%s' '%s'", stories, fixture("models/aidreams260K-f32.gguf"));
    cr_expect_eq(run_embed(in, exe, args, out, sizeof out), 1);
    cr_expect_str_eq(out, "");
    err = embed_stderr(in);
    cr_expect(strstr(err, "differ"), "incompatible drafter: %s", err);
    free(err);
    cr_expect_eq(run_embed(in, exe, "/nonexistent/model.gguf", out, sizeof out), 1);
    err = embed_stderr(in);
    cr_expect(strstr(err, "/nonexistent/model.gguf"), "bad path: %s", err);
    free(err);
}

Test(install, embed_built_with_pkg_config_against_the_shared_library, .timeout = 600) {
    installed in = install();
    char cmd[8192], flags[2048];
    snprintf(cmd, sizeof cmd, "%s pkg-config --cflags --libs arbor", in.pc_env);
    cr_assert_eq(run(cmd, flags, sizeof flags), 0, "%s", cmd);
    flags[strcspn(flags, "\n")] = 0;
    cr_expect(strstr(flags, in.prefix), "arbor.pc does not name the prefix: %s", flags);
    cr_expect(strstr(flags, "-larbor"), "%s", flags);

    char exe[512], log[8192];
    snprintf(exe, sizeof exe, "%s/embed", in.prefix);
    snprintf(cmd, sizeof cmd,
             "cc -std=c11 -Wall -Wextra -Werror -pedantic '%s/examples/embed.c' %s -o '%s' 2>&1",
             ARBOR_SOURCE_DIR, flags, exe);
    cr_assert_eq(run(cmd, log, sizeof log), 0, "%s:\n%s", cmd, log);
    /* it needs the installed shared library */
    snprintf(cmd, sizeof cmd, "readelf -d '%s' | grep NEEDED", exe);
    cr_assert_eq(run(cmd, log, sizeof log), 0);
    cr_expect(strstr(log, "libarbor.so.0"), "%s", log);
    check_embed_runs(&in, exe);
    uninstall(&in);
}

Test(install, embed_linked_with_the_static_library, .timeout = 600) {
    installed in = install();
    char cmd[8192], cflags[1024], deps[256], dep_libs[1024];
    snprintf(cmd, sizeof cmd, "%s pkg-config --cflags arbor", in.pc_env);
    cr_assert_eq(run(cmd, cflags, sizeof cflags), 0);
    cflags[strcspn(cflags, "\n")] = 0;
    /* the private dependencies arbor.pc lists, linked as shared libraries */
    snprintf(cmd, sizeof cmd, "%s pkg-config --print-requires-private arbor | tr '\\n' ' '",
             in.pc_env);
    cr_assert_eq(run(cmd, deps, sizeof deps), 0);
    cr_expect(strstr(deps, "libxxhash"), "%s", deps);
    snprintf(cmd, sizeof cmd, "pkg-config --libs %s", deps);
    cr_assert_eq(run(cmd, dep_libs, sizeof dep_libs), 0, "%s", cmd);
    dep_libs[strcspn(dep_libs, "\n")] = 0;

    char exe[512], log[8192];
    snprintf(exe, sizeof exe, "%s/embed_static", in.prefix);
    snprintf(cmd, sizeof cmd,
             "cc -std=c11 '%s/examples/embed.c' %s '%s/libarbor.a' %s -lpthread "
             "-lm -o '%s' 2>&1",
             ARBOR_SOURCE_DIR, cflags, in.libdir, dep_libs, exe);
    cr_assert_eq(run(cmd, log, sizeof log), 0, "%s:\n%s", cmd, log);
    snprintf(cmd, sizeof cmd, "readelf -d '%s' | grep NEEDED", exe);
    cr_assert_eq(run(cmd, log, sizeof log), 0);
    cr_expect(!strstr(log, "libarbor"), "statically linked, yet: %s", log);
    check_embed_runs(&in, exe);
    uninstall(&in);
}
