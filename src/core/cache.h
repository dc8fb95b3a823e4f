/* cache.h: arbor's per-user cache ($XDG_CACHE_HOME/arbor, else ~/.cache/arbor): where the default
 * benchmark pair, calibrated cost tables and other measured-once results are kept between runs.
 * Entries are small files named by a key that hashes everything they depend on (file identity,
 * CPU, threads, arbor version...); they are written atomically (a temporary file renamed into
 * place), so a reader sees a whole old entry or a whole new one. A cache entry is a hint, never
 * trusted blindly: readers validate what they read and ignore (with a warning) what fails. */
#ifndef ARBOR_CACHE_H
#define ARBOR_CACHE_H

#include "util.h"

/* The cache directory, created (with its parents) when missing. AR_ERR_IO with a message when
 * neither XDG_CACHE_HOME (absolute) nor HOME is set, or when it cannot be created. */
ar_status ar_cache_dir(char *out, size_t cap);
/* "<cache dir>/<name>" (name may contain one level of subdirectory, created when missing). */
ar_status ar_cache_path(const char *name, char *out, size_t cap);

/* A 64-bit identity of a file's current contents as the filesystem tells them (device, inode,
 * size, modification time): it changes when the file is rewritten or replaced. */
ar_status ar_file_identity(const char *path, uint64_t *out);

/* Writes n bytes to path through a temporary file in the same directory and a rename. */
ar_status ar_write_file_atomic(const char *path, const void *data, size_t n);
/* Reads a whole file of at most max bytes into a NUL-terminated malloc'd buffer (*n excludes
 * the NUL). AR_ERR_IO when it cannot be read, AR_ERR_FORMAT when it is larger than max. */
ar_status ar_read_small_file(const char *path, size_t max, char **out, size_t *n);

#endif
