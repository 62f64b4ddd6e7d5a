/*
 * fileserve: opens files beneath a root directory for the file-serving
 * applications (hq-interop, and the HTTP/3 side of uvquic-server), so both
 * enforce the same path jail.
 *
 *   uvq_fileserve fs;
 *   uvq_fileserve_init(&fs, "/srv/www", 0, err, sizeof(err));
 *   if (uvq_fileserve_open(&fs, "/dir/file", &fd, &size) == UVQ_FS_OK) ...
 *   uvq_fileserve_free(&fs);
 *
 * Not thread-safe; the root is opened once and stays open until free.
 */
#ifndef UVQ_APP_FILESERVE_H
#define UVQ_APP_FILESERVE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

/** Flag for uvq_fileserve_init: never use openat2(2), always the portable
 * component-by-component resolver (for tests of the fallback). */
#define UVQ_FILESERVE_NO_OPENAT2 0x1

typedef struct uvq_fileserve {
  int rootfd;
  /* openat2 is not to be used (flag), or returned ENOSYS once. */
  int no_openat2;
} uvq_fileserve;

/** What uvq_fileserve_open found. */
typedef enum uvq_fs_status {
  /** A regular file beneath the root: *pfd and *psize are set. */
  UVQ_FS_OK = 0,
  /** No such file (or a path component is missing or too long). */
  UVQ_FS_NOT_FOUND,
  /** The path escapes the root ("..", absolute, a symlink leading out; the
   * fallback resolver refuses every symlink), is empty, or names a directory
   * or anything else that is not a regular file. */
  UVQ_FS_FORBIDDEN,
  /** Opening or examining the file failed (I/O error, EMFILE, ...). */
  UVQ_FS_IO,
  /** uvq_fileserve_lookup only: a directory beneath the root; *pfd is it. */
  UVQ_FS_DIRECTORY
} uvq_fs_status;

/**
 * uvq_fileserve_init opens |root| as a directory. Every later open is
 * resolved beneath it with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS),
 * or, where the kernel lacks openat2 (or |flags| has
 * UVQ_FILESERVE_NO_OPENAT2), with openat one component at a time with
 * O_NOFOLLOW, refusing "..".
 *
 * Returns 0, or -1 with errno set and a message in |errbuf| (if not NULL).
 */
int uvq_fileserve_init(uvq_fileserve *fs, const char *root, unsigned int flags,
                       char *errbuf, size_t errbuflen);

/** uvq_fileserve_free closes the root. */
void uvq_fileserve_free(uvq_fileserve *fs);

/**
 * uvq_fileserve_open opens the file named by the request path |path|
 * (NUL-terminated, e.g. "/dir/file"): exactly one leading '/' is dropped, so
 * "//etc/passwd" asks for an absolute path, which is refused. On UVQ_FS_OK
 * the caller owns *pfd (O_RDONLY | O_CLOEXEC | O_NONBLOCK) and *psize is the
 * file's size at open; otherwise nothing is left open.
 */
uvq_fs_status uvq_fileserve_open(uvq_fileserve *fs, const char *path, int *pfd,
                                 uint64_t *psize);

/**
 * uvq_fileserve_lookup is uvq_fileserve_open for a path relative to the
 * root (|relpath| without the leading '/'; "" is the root itself) that also
 * opens directories: UVQ_FS_DIRECTORY with *pfd the directory. On
 * UVQ_FS_OK and UVQ_FS_DIRECTORY *pst is the fstat of *pfd, which the
 * caller owns.
 */
uvq_fs_status uvq_fileserve_lookup(uvq_fileserve *fs, const char *relpath,
                                   int *pfd, struct stat *pst);

#endif
