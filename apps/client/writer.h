/*
 * The client's one output writer: every download body (h3 and hq, a file,
 * stdout) goes through it.
 *
 * Received bytes are copied into 256 KiB blocks; full blocks are written in
 * one writev (up to OUTW_MAX_IOV blocks) on libuv's threadpool, so a slow
 * disk or a full pipe never stops the event loop. A partial block is
 * written once it has waited OUTW_FLUSH_MS, so a slow stream still reaches
 * its reader. One write is in flight per writer; bytes keep their order.
 *
 * Back-pressure: every byte buffered and not yet written is reported held
 * on the connection (uvq_conn_recv_hold) and released when written. Once a
 * connection holds settings.conn_recv_budget (the client sets
 * OUTW_CONN_BUDGET) the library stops returning flow-control credit, so
 * the peer can send only what it had been granted already. A writer's
 * buffers are therefore bounded, per connection, by conn_recv_budget
 * (default 1 MiB) + the connection's flow-control window, which the peer
 * may fill while credit is withheld (settings.max_window, default 24 MiB)
 * + one partly filled block, plus OUTW_SPARE written blocks kept for
 * reuse (2 MiB) per writer. With the defaults: about 27 MiB per
 * connection at worst; measured, a reader slower than the network keeps
 * the whole client under 11 MiB resident.
 *
 * Files: the body goes to TARGET.part, opened when the first byte arrives
 * (a response that fails before any body creates nothing and never touches
 * TARGET), and renamed to TARGET only by outw_close(commit = 1) once every
 * byte is on disk. Otherwise the .part stays if it has data (a later
 * `-C -` resumes it) and is removed if empty. A TARGET that exists and is
 * not a regular file (/dev/null, a FIFO) is written in place, never
 * renamed over; a symbolic link is written through.
 */
#ifndef UVQ_CLIENT_WRITER_H
#define UVQ_CLIENT_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "uvquic/uvquic.h"

#define OUTW_BLOCK (256u * 1024u)
#define OUTW_MAX_IOV 16
#define OUTW_FLUSH_MS 20
/* Written blocks kept for reuse. */
#define OUTW_SPARE 8

typedef struct outw outw;
typedef struct outw_block outw_block;

/* Called once from outw_close's completion with the writer's outcome: 0,
 * or the errno of the first failed open, write or rename. */
typedef void (*outw_done_cb)(outw *w, int err, void *arg);

struct outw {
  uv_loop_t *loop;
  /* The final path (NULL: stdout; a symbolic link resolved) and
   * TARGET.part (NULL when |direct|: a device or FIFO, written in place). */
  char *target;
  char *part;
  int direct;
  int fd;
  /* Resume: open the .part for appending, writing from its end. */
  int append;
  /* Regular file: writes at |off| (pwritev); else at the current position. */
  int seekable;
  uint64_t off;
  /* The connection the held bytes are reported on (NULL: none). */
  uvq_conn *conn;
  size_t held;
  /* Blocks in order: the first |inflight| are being written; the last may
   * be partial. */
  outw_block *head, *tail;
  outw_block *spare;
  size_t nspare;
  size_t inflight;
  size_t queued; /* bytes buffered, in flight included */
  int writing;
  uv_fs_t req;
  uv_buf_t iov[OUTW_MAX_IOV];
  uv_timer_t flush;
  int flush_armed, flush_wanted;
  /* --retry starting over while a write was in flight: truncate after it. */
  int truncate_pending;
  outw_block *stale;
  /* Counts, for the tests and benchmarks. */
  uint64_t appended, written, writes;
  int err;
  /* outw_close. */
  int closing, commit;
  outw_done_cb done;
  void *arg;
};

/**
 * outw_init prepares |w| to write to |target| (NULL: standard output)
 * through TARGET.part; nothing is opened yet. |append|: continue an
 * existing .part (resume). Returns 0 or -1 (out of memory).
 */
int outw_init(outw *w, uv_loop_t *loop, const char *target, int append);

/** The size of an existing TARGET.part (0: none, or no .part is used). */
uint64_t outw_part_size(const outw *w);

/** Continue the existing .part (-C -): appends go after its end. Call
 * before the first append. */
void outw_resume(outw *w);

/** The connection later appends are held on; NULL forgets the current one
 * (it closed: its holds went with it). */
void outw_set_conn(outw *w, uvq_conn *conn);

/**
 * outw_append copies |len| bytes into |w|, opening the output on the first
 * byte. Returns 0, or -1 with errno set if the writer failed (now or in an
 * earlier write): the caller abandons the download.
 */
int outw_append(outw *w, const uint8_t *data, size_t len);

/**
 * outw_restart drops what was written so far, for a download that starts
 * over. Returns 0, or -1 with errno ESPIPE if the output cannot be taken
 * back (stdout, a pipe).
 */
int outw_restart(outw *w);

/**
 * outw_close writes what is buffered, closes the output and, with |commit|
 * and no error, renames the .part to the target (creating an empty target
 * for an empty body). |done| fires once, later, from the loop.
 */
void outw_close(outw *w, int commit, outw_done_cb done, void *arg);

/** What to call the output in messages. */
const char *outw_name(const outw *w);

#endif
