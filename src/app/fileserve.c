/* Files beneath a root directory; see fileserve.h. */
#include "app/fileserve.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

int uvq_fileserve_init(uvq_fileserve *fs, const char *root, unsigned int flags,
                       char *errbuf, size_t errbuflen) {
  int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

  if (fd < 0) {
    int saved = errno;
    if (errbuf && errbuflen) {
      snprintf(errbuf, errbuflen, "cannot open root directory %s: %s", root,
               strerror(saved));
    }
    errno = saved;
    return -1;
  }
  fs->rootfd = fd;
  fs->no_openat2 = (flags & UVQ_FILESERVE_NO_OPENAT2) != 0;
  return 0;
}

void uvq_fileserve_free(uvq_fileserve *fs) {
  if (fs->rootfd >= 0) {
    close(fs->rootfd);
    fs->rootfd = -1;
  }
}

/* Portable resolver: one component at a time, no symlinks at all, no "..",
 * never leaving |rootfd|. Returns an fd or -1 with errno set. */
static int open_beneath_fallback(int rootfd, const char *path) {
  char comp[NAME_MAX + 1];
  const char *p = path;
  int dirfd = rootfd;

  if (*p == '/') {
    errno = EXDEV;
    return -1;
  }
  for (;;) {
    const char *end = strchr(p, '/');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    int last, fd;

    while (end && end[1] == '/') {
      /* "a//b" is "a/b". */
      ++end;
    }
    last = end == NULL || end[1] == '\0';
    if (len == 0 || (len == 1 && p[0] == '.')) {
      if (last) {
        /* The path names a directory ("" or "dir/"). */
        fd = openat(dirfd, ".", O_RDONLY | O_CLOEXEC | O_DIRECTORY);
        goto done;
      }
      p = end + 1;
      continue;
    }
    if (len == 2 && p[0] == '.' && p[1] == '.') {
      errno = EXDEV;
      fd = -1;
      goto done;
    }
    if (len > NAME_MAX) {
      errno = ENAMETOOLONG;
      fd = -1;
      goto done;
    }
    memcpy(comp, p, len);
    comp[len] = '\0';
    if (last) {
      fd = openat(dirfd, comp, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
      goto done;
    }
    fd = openat(dirfd, comp, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_DIRECTORY);
    if (fd < 0) {
      goto done;
    }
    if (dirfd != rootfd) {
      close(dirfd);
    }
    dirfd = fd;
    p = end + 1;
    continue;

  done:
    if (dirfd != rootfd) {
      int saved = errno;
      close(dirfd);
      errno = saved;
    }
    return fd;
  }
}

static int open_beneath(uvq_fileserve *fs, const char *path) {
  if (!fs->no_openat2) {
    struct open_how how;
    long fd;

    memset(&how, 0, sizeof(how));
    how.flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    fd = syscall(SYS_openat2, fs->rootfd, path, &how, sizeof(how));
    if (fd >= 0 || errno != ENOSYS) {
      return (int)fd;
    }
    fs->no_openat2 = 1;
  }
  return open_beneath_fallback(fs->rootfd, path);
}

static uvq_fs_status open_errno_to_status(int err) {
  switch (err) {
  case ENOENT:
  case ENOTDIR:
  case ENAMETOOLONG:
    return UVQ_FS_NOT_FOUND;
  case EXDEV: /* RESOLVE_BENEATH: the path leaves the root */
  case ELOOP: /* O_NOFOLLOW / RESOLVE_NO_MAGICLINKS met a link */
  case EACCES:
  case EPERM:
    return UVQ_FS_FORBIDDEN;
  default:
    return UVQ_FS_IO;
  }
}

uvq_fs_status uvq_fileserve_open(uvq_fileserve *fs, const char *path, int *pfd,
                                 uint64_t *psize) {
  struct stat sb;
  int fd;

  /* The path is relative to the root: drop exactly one leading '/'. */
  if (path[0] != '/' || path[1] == '\0') {
    return UVQ_FS_FORBIDDEN;
  }
  fd = open_beneath(fs, path + 1);
  if (fd < 0) {
    return open_errno_to_status(errno);
  }
  if (fstat(fd, &sb) != 0) {
    close(fd);
    return UVQ_FS_IO;
  }
  if (!S_ISREG(sb.st_mode)) {
    close(fd);
    return UVQ_FS_FORBIDDEN;
  }
  *pfd = fd;
  *psize = (uint64_t)sb.st_size;
  return UVQ_FS_OK;
}

uvq_fs_status uvq_fileserve_lookup(uvq_fileserve *fs, const char *relpath,
                                   int *pfd, struct stat *pst) {
  int fd;

  if (relpath[0] == '/') {
    return UVQ_FS_FORBIDDEN;
  }
  fd = open_beneath(fs, relpath[0] == '\0' ? "." : relpath);
  if (fd < 0) {
    return open_errno_to_status(errno);
  }
  if (fstat(fd, pst) != 0) {
    close(fd);
    return UVQ_FS_IO;
  }
  if (S_ISDIR(pst->st_mode)) {
    *pfd = fd;
    return UVQ_FS_DIRECTORY;
  }
  if (!S_ISREG(pst->st_mode)) {
    close(fd);
    return UVQ_FS_FORBIDDEN;
  }
  *pfd = fd;
  return UVQ_FS_OK;
}
