/* h1: the built-in HTTP/1.1 client for plain http:// URLs, on the libuv loop without libcurl.
 * fetch.c routes a request here when nothing needs curl (no TLS, redirects, proxy or userinfo);
 * a webhook POST then costs a write and a read on a pooled keep-alive connection instead of a
 * trip through curl's multi-socket machinery. Results use fetch.h's bg_fetch_result contract.
 * Call everything from the loop's thread; callbacks run there too, never from bg_h1_start. */
#ifndef BG_H1_H
#define BG_H1_H

#include "net/fetch.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define BG_H1_USER_AGENT "beagle/0.1" /* fetch.c gives curl the same */
#define BG_H1_DECLINED 1              /* bg_h1_start: not a URL or request h1 handles */
/* Idle keep-alive connections kept per host:port. Above notification_max_in_flight with room
 * to spare: at 32 deliveries in flight, a pool of 16 closed and reopened connections whenever
 * more than 16 answers came in one turn of the loop (6.5k against 10-14k deliveries/s). */
#define BG_H1_MAX_IDLE 64

typedef struct bg_h1 bg_h1;         /* connection pool and requests in flight, one per fetcher */
typedef struct bg_h1_req bg_h1_req; /* one request */

/* Returns 0 and *out, or BG_ENOMEM / a libuv error. */
int bg_h1_new(uv_loop_t *loop, bg_h1 **out);

/* Cancels whatever is in flight (no callbacks), closes every connection, and calls closed(ud)
 * from the loop once the last handle is closed, then frees h. Never calls closed synchronously. */
void bg_h1_free(bg_h1 *h, void (*closed)(void *ud), void *ud);

/* Starts o as an HTTP/1.1 request (o->url must start with http://; follow_redirects and the mail
 * fields are ignored). timeout_ms and max_body are resolved (non-zero). Returns 0 (cb(ud, res)
 * runs exactly once, later, unless bg_h1_cancel), BG_ENOMEM, or BG_H1_DECLINED when the URL
 * or headers need curl (userinfo, an unusual host or path, Transfer-Encoding, Expect, ...). */
int bg_h1_start(bg_h1 *h, const bg_fetch_opts *o, uint64_t timeout_ms, size_t max_body,
                bg_fetch_cb cb, void *ud, bg_h1_req **out);

/* Aborts a request whose callback has not run; its connection is closed, not pooled. */
void bg_h1_cancel(bg_h1_req *r);

/* Closes idle connections after ms instead of 30 s (for tests). */
void bg_h1_set_idle_ms(bg_h1 *h, uint64_t ms);

#endif
