/* test_mail: mail through the fetcher (SMTP over libcurl on libuv's threadpool) and the plugin
 * binding bg.mail, against tests/smtp_sink.py, a Python SMTP sink that records each message
 * it accepts as one JSON line. The sink refuses recipients containing "reject", answers those
 * containing "slow" after 3 s, takes 3 s over the reply to the end of the message for
 * "late-eom" and over the reply to QUIT for "late-quit", and fails the password "wrong". */
#define _GNU_SOURCE
#include "base/bg.h"
#include "base/sha256.h"
#include "net/fetch.h"
#include "script/script.h"
#include "test_support.h"

#include <arpa/inet.h>
#include <lauxlib.h>
#include <lualib.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

extern char **environ;

static uv_loop_t *loop;
static bg_fetcher *fetcher;
static uv_timer_t deadline;

/* ---- the sink ---- */

static pid_t sink_pid = -1;
static int sink_port;
static char tmpdir[64];
static char sink_out[128];

static void sink_stop(void) {
  if (sink_pid > 0) {
    kill(sink_pid, SIGTERM);
    waitpid(sink_pid, NULL, 0);
    sink_pid = -1;
  }
  unlink(sink_out);
  char sandbox[160];
  snprintf(sandbox, sizeof sandbox, "%s/agent/sandbox.lua", tmpdir);
  unlink(sandbox);
  snprintf(sandbox, sizeof sandbox, "%s/agent", tmpdir);
  rmdir(sandbox);
  rmdir(tmpdir);
}

/* Starts python3 tests/smtp_sink.py and reads the port it prints. */
static void sink_start(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/bg_test_mail_XXXXXX");
  ASSERT(mkdtemp(tmpdir) != NULL);
  snprintf(sink_out, sizeof sink_out, "%s/mail.jsonl", tmpdir);
  int fds[2];
  ASSERT(pipe(fds) == 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  posix_spawn_file_actions_addclose(&fa, fds[1]);
  char *argv[] = {"python3", BG_SOURCE_DIR "/tests/smtp_sink.py", sink_out, NULL};
  int rc = posix_spawnp(&sink_pid, "python3", &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  ASSERT_EQ_INT(rc, 0);
  atexit(sink_stop); /* also when an ASSERT exits */
  FILE *f = fdopen(fds[0], "r");
  char line[32];
  ASSERT(f != NULL);
  ASSERT(fgets(line, sizeof line, f) != NULL);
  fclose(f);
  sink_port = atoi(line);
  ASSERT(sink_port > 0);
}

/* The sink's records, one JSON line each (exits the test if unreadable). */
static char *sink_records(void) {
  static char buf[16384];
  FILE *f = fopen(sink_out, "r");
  size_t n = 0;
  if (f != NULL) {
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
  }
  buf[n] = '\0';
  return buf;
}

static int count_lines(const char *s) {
  int n = 0;
  for (; *s; s++)
    n += *s == '\n';
  return n;
}

#define ASSERT_HAS(hay, needle)                                                                    \
  do {                                                                                             \
    if (strstr((hay), (needle)) == NULL) {                                                         \
      fprintf(stderr, "%s:%d: \"%s\" not found in:\n%s\n", __FILE__, __LINE__, (needle), (hay));   \
      exit(1);                                                                                     \
    }                                                                                              \
  } while (0)

/* ---- the loop ---- */

typedef struct result {
  int called, err;
  long status;
  char errmsg[256];
  char replies[2048];
  double secs;
} result;

static int ndone;

static void on_done(void *ud, const bg_fetch_result *res) {
  result *r = ud;
  r->called++;
  r->err = res->err;
  r->status = res->status;
  snprintf(r->errmsg, sizeof r->errmsg, "%s", res->errmsg);
  snprintf(r->replies, sizeof r->replies, "%.*s", (int)res->headers_len, res->headers);
  r->secs = res->total_time;
  ndone++;
}

static void on_deadline(uv_timer_t *t) {
  *(int *)t->data = 1;
}

/* Runs the loop until *counter reaches target or ms pass; 0 when the target was met. */
static int run_until(const int *counter, int target, uint64_t ms) {
  int hit = 0;
  deadline.data = &hit;
  uv_timer_start(&deadline, on_deadline, ms, 0);
  while (*counter < target && !hit)
    uv_run(loop, UV_RUN_ONCE);
  uv_timer_stop(&deadline);
  return *counter >= target ? 0 : -1;
}

static const char *sink_url(void) {
  static char u[64];
  snprintf(u, sizeof u, "smtp://127.0.0.1:%d", sink_port);
  return u;
}

/* Sends one mail and waits for it. */
static void send_mail(bg_fetch_opts *o, result *r) {
  if (o->url == NULL) o->url = sink_url();
  if (o->mail_from == NULL) o->mail_from = "alerts@example.com";
  memset(r, 0, sizeof *r);
  ndone = 0;
  ASSERT_EQ_INT(bg_fetch_start(fetcher, o, on_done, r, NULL), 0);
  ASSERT_EQ_INT(r->called, 0); /* never synchronous */
  ASSERT_EQ_INT(run_until(&ndone, 1, 10000), 0);
  ASSERT_EQ_INT(r->called, 1);
  ASSERT_EQ_INT(bg_fetcher_active(fetcher), 0);
}

/* ---- fetcher tests ---- */

static void test_send_with_auth(void) {
  const char *to[] = {"oncall@example.com", "<second@example.com>", NULL};
  const char *msg = "From: beagle <alerts@example.com>\r\n"
                    "To: oncall@example.com\r\n"
                    "Subject: [FIRING] disk_full\r\n"
                    "\r\n"
                    "line one\r\n"
                    ".leading dot\r\n"
                    "..two dots\r\n"
                    ".\r\n"
                    "bare lf\n"
                    "last\r\n";
  bg_fetch_opts o = {.mail_rcpt = to,
                     .username = "bob",
                     .password = "s3cret pw",
                     .body = msg,
                     .body_len = strlen(msg)};
  result r;
  send_mail(&o, &r);
  ASSERT_EQ_STR(r.errmsg, "");
  ASSERT_EQ_INT(r.err, 0);
  ASSERT_EQ_INT(r.status, 250);
  ASSERT_HAS(r.replies, "235 "); /* authenticated */
  ASSERT_HAS(r.replies, "221 "); /* the connection is not kept: QUIT went out */
  char *rec = sink_records();
  ASSERT_EQ_INT(count_lines(rec), 1);
  ASSERT_HAS(rec, "\"from\":\"alerts@example.com\"");
  ASSERT_HAS(rec, "\"to\":[\"oncall@example.com\",\"second@example.com\"]");
  ASSERT_HAS(rec, "\"auth_user\":\"bob\"");
  ASSERT_HAS(rec, "\"auth_password\":\"s3cret pw\"");
  /* dot-stuffed by curl, unstuffed by the sink; the bare LF went out as CRLF */
  ASSERT_HAS(rec, "\"data\":\"From: beagle <alerts@example.com>\\r\\nTo: oncall@example.com\\r\\n"
                  "Subject: [FIRING] disk_full\\r\\n\\r\\nline one\\r\\n.leading dot\\r\\n"
                  "..two dots\\r\\n.\\r\\nbare lf\\r\\nlast\\r\\n\"}");
}

static void test_send_without_auth(void) {
  const char *to[] = {"a@example.com", NULL};
  /* no trailing CRLF (curl ends the last line), and STARTTLS only if offered (it is not) */
  bg_fetch_opts o = {
      .mail_rcpt = to, .body = "Subject: x\r\n\r\nno newline", .body_len = 24, .use_ssl = 1};
  result r;
  send_mail(&o, &r);
  ASSERT_EQ_STR(r.errmsg, "");
  ASSERT_EQ_INT(r.status, 250);
  char *rec = sink_records();
  ASSERT_EQ_INT(count_lines(rec), 2);
  rec = strchr(rec, '\n') + 1;
  ASSERT_HAS(rec, "\"auth_user\":null");
  ASSERT_HAS(rec, "\"data\":\"Subject: x\\r\\n\\r\\nno newline\\r\\n\"");

  /* an empty message and the null sender */
  bg_fetch_opts e = {.mail_rcpt = to, .mail_from = ""};
  send_mail(&e, &r);
  ASSERT_EQ_INT(r.err, 0);
  ASSERT_EQ_INT(r.status, 250);
  rec = sink_records();
  ASSERT_EQ_INT(count_lines(rec), 3);
  ASSERT_HAS(rec, "{\"from\":\"\",\"to\":[\"a@example.com\"]");
}

static void test_smtp_errors(void) {
  const char *bad_rcpt[] = {"reject@example.com", NULL};
  const char *to[] = {"a@example.com", NULL};
  result r;
  int before = count_lines(sink_records());

  bg_fetch_opts o = {.mail_rcpt = bad_rcpt, .body = "x\r\n", .body_len = 3};
  send_mail(&o, &r);
  ASSERT_EQ_INT(r.err, BG_EIO);
  ASSERT(r.errmsg[0] != '\0');
  ASSERT_EQ_INT(r.status, 550);
  fprintf(stderr, "  rejected recipient: %s\n", r.errmsg);

  bg_fetch_opts a = {
      .mail_rcpt = to, .username = "bob", .password = "wrong", .body = "x\r\n", .body_len = 3};
  send_mail(&a, &r);
  ASSERT_EQ_INT(r.err, BG_EIO);
  ASSERT(r.errmsg[0] != '\0');
  fprintf(stderr, "  bad password: %s\n", r.errmsg);

  /* STARTTLS required, and the sink doesn't offer it */
  bg_fetch_opts t = {
      .mail_rcpt = to, .use_ssl = BG_FETCH_TLS_REQUIRED, .body = "x\r\n", .body_len = 3};
  send_mail(&t, &r);
  ASSERT_EQ_INT(r.err, BG_EIO);
  ASSERT(r.errmsg[0] != '\0');
  fprintf(stderr, "  starttls required: %s\n", r.errmsg);

  ASSERT_EQ_INT(count_lines(sink_records()), before);
}

static int unused_port(void) {
  struct sockaddr_in addr = {.sin_family = AF_INET};
  socklen_t len = sizeof addr;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT(fd >= 0);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ_INT(bind(fd, (struct sockaddr *)&addr, sizeof addr), 0);
  ASSERT_EQ_INT(getsockname(fd, (struct sockaddr *)&addr, &len), 0);
  close(fd);
  return ntohs(addr.sin_port);
}

static void test_refused_and_timeout(void) {
  const char *to[] = {"a@example.com", NULL};
  char u[64];
  snprintf(u, sizeof u, "smtp://127.0.0.1:%d", unused_port());
  bg_fetch_opts o = {.url = u, .mail_rcpt = to, .body = "x", .body_len = 1};
  result r;
  send_mail(&o, &r);
  ASSERT_EQ_INT(r.err, BG_EIO);
  ASSERT(r.errmsg[0] != '\0');
  ASSERT_EQ_INT(r.status, 0);
  ASSERT(r.secs < 2);

  const char *slow[] = {"slow@example.com", NULL};
  bg_fetch_opts s = {.mail_rcpt = slow, .body = "x", .body_len = 1, .timeout_ms = 300};
  send_mail(&s, &r);
  ASSERT_EQ_INT(r.err, BG_ETIMEDOUT);
  ASSERT(r.errmsg[0] != '\0');
  if (r.secs < 0.25 || r.secs > 1.5) {
    fprintf(stderr, "timeout took %.3f s\n", r.secs);
    exit(1);
  }
}

/* Five slow mails: four take libuv's four threads (waiting for the RCPT reply), the fifth
 * waits in the queue. Canceled, none calls back or is delivered, and the threads are free
 * again at once: a mail sent right after is not kept waiting. */
static void test_cancel(void) {
  const char *slow[] = {"slow@example.com", NULL};
  bg_fetch_opts o = {.url = sink_url(), .mail_from = "a@b", .mail_rcpt = slow, .body = "x"};
  result r[5];
  bg_fetch *req[5];
  memset(r, 0, sizeof r);
  int before = count_lines(sink_records());
  for (int i = 0; i < 5; i++)
    ASSERT_EQ_INT(bg_fetch_start(fetcher, &o, on_done, &r[i], &req[i]), 0);
  ASSERT_EQ_INT(bg_fetcher_active(fetcher), 5);
  ndone = 0;
  run_until(&ndone, 1, 300);   /* connected, waiting for the RCPT reply */
  for (int i = 4; i >= 0; i--) /* the queued one first, before a thread frees up for it */
    bg_fetch_cancel(req[i]);
  ASSERT_EQ_INT(bg_fetcher_active(fetcher), 0);

  const char *to[] = {"a@example.com", NULL};
  bg_fetch_opts fast = {.mail_rcpt = to, .body = "x\r\n", .body_len = 3};
  result f;
  send_mail(&fast, &f);
  ASSERT_EQ_INT(f.err, 0);
  if (f.secs > 1) {
    fprintf(stderr, "a mail after the cancels took %.3f s\n", f.secs);
    exit(1);
  }
  for (int i = 0; i < 5; i++)
    ASSERT_EQ_INT(r[i].called, 0);
  ASSERT_EQ_INT(count_lines(sink_records()), before + 1);
}

/* bg_fetcher_free with mails on the threadpool, running and queued: no callback, and the
 * fetcher goes only after the last of them (ASan checks the rest). */
static void test_free_in_flight(void) {
  bg_fetcher *f2;
  ASSERT_EQ_INT(bg_fetcher_new(loop, &f2), 0);
  const char *slow[] = {"slow@example.com", NULL};
  bg_fetch_opts o = {.url = sink_url(), .mail_from = "a@b", .mail_rcpt = slow, .body = "x"};
  result r[5];
  memset(r, 0, sizeof r);
  for (int i = 0; i < 5; i++)
    ASSERT_EQ_INT(bg_fetch_start(f2, &o, on_done, &r[i], NULL), 0);
  int never = 0;
  run_until(&never, 1, 300);
  bg_fetcher_free(f2);
  run_until(&never, 1, 300);
  for (int i = 0; i < 5; i++)
    ASSERT_EQ_INT(r[i].called, 0);
}

/* ---- the loop is never blocked ---- */

static struct {
  uv_timer_t timer;
  int ticks;
  uint64_t last_ns, max_gap_ns;
} tick;

static void on_tick(uv_timer_t *t) {
  uint64_t now = uv_hrtime();
  (void)t;
  if (now - tick.last_ns > tick.max_gap_ns) tick.max_gap_ns = now - tick.last_ns;
  tick.last_ns = now;
  tick.ticks++;
}

/* Three mails whose server takes 3 s at one reply each: to RCPT, to the end of the message and
 * to QUIT (libcurl's multi interface waits for the last two synchronously), and a fast one, all
 * at once. A 10 ms timer on the loop keeps ticking all along, the fast mail is not held up and
 * the slow ones go side by side. */
static void test_loop_not_blocked(void) {
  const char *slow[] = {"slow@example.com", NULL};
  const char *eom[] = {"late-eom@example.com", NULL};
  const char *quit[] = {"late-quit@example.com", NULL};
  const char *fast[] = {"fast@example.com", NULL};
  const char *const *to[] = {slow, eom, quit, fast};
  result r[4];
  memset(r, 0, sizeof r);
  int before = count_lines(sink_records());
  uv_timer_init(loop, &tick.timer);
  ndone = 0;
  uint64_t start = uv_hrtime();
  tick.last_ns = start;
  uv_timer_start(&tick.timer, on_tick, 10, 10);
  for (int i = 0; i < 4; i++) {
    bg_fetch_opts o = {
        .url = sink_url(), .mail_from = "a@b", .mail_rcpt = to[i], .body = "x\r\n", .body_len = 3};
    ASSERT_EQ_INT(bg_fetch_start(fetcher, &o, on_done, &r[i], NULL), 0);
  }
  ASSERT_EQ_INT(run_until(&ndone, 1, 2000), 0);
  ASSERT_EQ_INT(r[3].called, 1); /* the fast one, first */
  ASSERT(r[3].secs < 1);
  ASSERT_EQ_INT(run_until(&ndone, 4, 10000), 0);
  double secs = (double)(uv_hrtime() - start) / 1e9;
  uv_timer_stop(&tick.timer);
  uv_close((uv_handle_t *)&tick.timer, NULL);
  fprintf(stderr, "  %d ticks in %.2f s, longest gap %.1f ms\n", tick.ticks, secs,
          (double)tick.max_gap_ns / 1e6);
  for (int i = 0; i < 4; i++) {
    ASSERT_EQ_INT(r[i].called, 1);
    ASSERT_EQ_STR(r[i].errmsg, "");
    ASSERT_EQ_INT(r[i].status, 250);
    if (i < 3) ASSERT(r[i].secs > 2.9);
  }
  ASSERT_HAS(r[2].replies, "221 ");
  ASSERT(secs < 5); /* side by side: one after another would be 9 s */
  ASSERT(tick.ticks >= 100);
  ASSERT(tick.max_gap_ns < 200 * 1000000ull);
  ASSERT_EQ_INT(bg_fetcher_active(fetcher), 0);
  ASSERT_EQ_INT(count_lines(sink_records()), before + 4);
}

static void test_bad_args(void) {
  const char *to[] = {"a@example.com", NULL};
  const char *none[] = {NULL};
  const char *empty[] = {"", NULL};
  const char *crlf[] = {"a@example.com\r\nDATA", NULL};
  result r = {0};
  bg_fetch_opts ok = {.url = sink_url(), .mail_from = "a@b", .mail_rcpt = to};
  bg_fetch_opts o = ok;
  o.mail_from = NULL;
  ASSERT_EQ_INT(bg_fetch_start(fetcher, &o, on_done, &r, NULL), BG_EINVAL);
  o = ok;
  o.mail_from = "a@b\r\nRSET";
  ASSERT_EQ_INT(bg_fetch_start(fetcher, &o, on_done, &r, NULL), BG_EINVAL);
  o = ok;
  o.mail_rcpt = NULL;
  ASSERT_EQ_INT(bg_fetch_start(fetcher, &o, on_done, &r, NULL), BG_EINVAL);
  o.mail_rcpt = none;
  ASSERT_EQ_INT(bg_fetch_start(fetcher, &o, on_done, &r, NULL), BG_EINVAL);
  o.mail_rcpt = empty;
  ASSERT_EQ_INT(bg_fetch_start(fetcher, &o, on_done, &r, NULL), BG_EINVAL);
  o.mail_rcpt = crlf;
  ASSERT_EQ_INT(bg_fetch_start(fetcher, &o, on_done, &r, NULL), BG_EINVAL);
  o = ok;
  o.use_ssl = 3;
  ASSERT_EQ_INT(bg_fetch_start(fetcher, &o, on_done, &r, NULL), BG_EINVAL);
  o = ok;
  o.url = "imap://127.0.0.1/";
  ASSERT_EQ_INT(bg_fetch_start(fetcher, &o, on_done, &r, NULL), BG_EINVAL);
  ASSERT_EQ_INT(bg_fetcher_active(fetcher), 0);
  ASSERT_EQ_INT(r.called, 0);
}

/* ---- the plugin binding ---- */

/* A stand-in for lua/agent/sandbox.lua: entry points that call the bindings directly. */
static const char *SANDBOX =
    "local bg = __bg\n"
    "function mail(opts)\n"
    "  local ok, err = bg.mail(opts)\n"
    "  return { ok = ok, err = err }\n"
    "end\n"
    "function hashes(a)\n"
    "  return { sha = bg.sha256(a.msg), hmac = bg.hmac_sha256(a.key, a.msg) }\n"
    "end\n";

/* Host-side helpers: start(fname, arg, timeout) returns a table filled when the run ends. */
static const char *HOST = "S = assert(core.script_new { name = 'mailtest' })\n"
                          "DONE = 0\n"
                          "function start(fname, arg, timeout)\n"
                          "  local r = {}\n"
                          "  S:run(fname, arg, { timeout = timeout or 5 }, function(ok, v)\n"
                          "    r.ok, r.v, r.done = ok, v, true\n"
                          "    DONE = DONE + 1\n"
                          "  end)\n"
                          "  return r\n"
                          "end\n"
                          "function records()\n"
                          "  local f = assert(io.open(SINK_OUT))\n"
                          "  local s = f:read('*a')\n"
                          "  f:close()\n"
                          "  return s\n"
                          "end\n";

static lua_State *H;

static void host_do(const char *code) {
  if (luaL_dostring(H, code) != 0) {
    fprintf(stderr, "host Lua failed: %s\n--- code:\n%s\n", lua_tostring(H, -1), code);
    exit(1);
  }
}

static int host_done(void) {
  lua_getglobal(H, "DONE");
  int n = (int)lua_tointeger(H, -1);
  lua_pop(H, 1);
  return n;
}

/* Waits until the host's DONE counter reaches n. */
static void host_wait(int n, uint64_t ms) {
  int done = host_done();
  uint64_t end = uv_now(loop) + ms;
  while (done < n && uv_now(loop) < end) {
    uv_timer_start(&deadline, on_deadline, 20, 0);
    int hit = 0;
    deadline.data = &hit;
    uv_run(loop, UV_RUN_ONCE);
    uv_timer_stop(&deadline);
    done = host_done();
  }
  ASSERT_EQ_INT(done, n);
}

static bg_runtime *runtime; /* test_lua_bindings' */

static void test_lua_bindings(void) {
  char dir[160];
  snprintf(dir, sizeof dir, "%s/agent", tmpdir);
  ASSERT_EQ_INT(mkdir(dir, 0700), 0);
  char path[200];
  snprintf(path, sizeof path, "%s/sandbox.lua", dir);
  FILE *f = fopen(path, "w");
  ASSERT(f != NULL);
  fputs(SANDBOX, f);
  fclose(f);

  /* the runtime's run-queue handles live in the loop until the end of main */
  static bg_runtime rt;
  rt = (bg_runtime){.loop = loop, .fetcher = fetcher, .lua_dir = tmpdir};
  runtime = &rt;
  H = luaL_newstate();
  luaL_openlibs(H);
  lua_newtable(H);
  bg_script_open_host(H, &rt);
  lua_setglobal(H, "core");
  lua_pushinteger(H, sink_port);
  lua_setglobal(H, "PORT");
  lua_pushstring(H, sink_out);
  lua_setglobal(H, "SINK_OUT");
  host_do(HOST);

  /* hashes, with NUL bytes in key and message */
  uint8_t d[BG_SHA256_LEN];
  char want_sha[BG_SHA256_HEX_LEN], want_hmac[BG_SHA256_HEX_LEN];
  bg_sha256("a\0b", 3, d);
  bg_hex(d, sizeof d, want_sha);
  bg_hmac_sha256("k\0y", 3, "a\0b", 3, d);
  bg_hex(d, sizeof d, want_hmac);
  lua_pushstring(H, want_sha);
  lua_setglobal(H, "WANT_SHA");
  lua_pushstring(H, want_hmac);
  lua_setglobal(H, "WANT_HMAC");
  host_do("H1 = start('hashes', { msg = 'a\\0b', key = 'k\\0y' })\n"
          "H2 = start('hashes', { msg = 'The quick brown fox jumps over the lazy dog', key = "
          "'key' })");
  host_wait(2, 2000);
  host_do("assert(H1.ok, H1.v)\n"
          "assert(H1.v.sha == WANT_SHA, H1.v.sha)\n"
          "assert(H1.v.hmac == WANT_HMAC, H1.v.hmac)\n"
          "assert(H2.v.sha == "
          "'d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592', H2.v.sha)\n"
          "assert(H2.v.hmac == "
          "'f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8', H2.v.hmac)");

  /* a mail with credentials; 'to' as one string; LF line ends become CRLF */
  int before = count_lines(sink_records());
  host_do("M1 = start('mail', { url = 'smtp://127.0.0.1:' .. PORT, from = 'beagle@example.com',\n"
          "  to = 'lua@example.com', username = 'alice', password = 'pw x',\n"
          "  starttls = false, message = 'Subject: from lua\\n\\nhello\\n', timeout = 5 })\n"
          "M2 = start('mail', { url = 'smtp://127.0.0.1:' .. PORT, from = 'beagle@example.com',\n"
          "  to = { 'x@example.com', 'reject@example.com' }, message = 'x' })\n"
          "M3 = start('mail', { url = 'smtp://127.0.0.1:' .. PORT, from = 'b@example.com',\n"
          "  to = { 'slow@example.com' }, message = 'x' }, 0.3)");
  host_wait(5, 5000);
  host_do(
      "assert(M1.ok, M1.v)\n"
      "assert(M1.v.ok == true and M1.v.err == nil)\n"
      "assert(M2.ok, M2.v)\n"
      "assert(M2.v.ok == nil and type(M2.v.err) == 'string' and #M2.v.err > 0, M2.v.err)\n"
      /* the mail's timeout is clamped to the run's deadline: whichever fires first */
      "assert(M3.ok == false and M3.v == 'timeout' or M3.ok and M3.v.ok == nil\n"
      "  and M3.v.err:find('timed out'), tostring(M3.v and (M3.v.err or M3.v)))\n"
      "local rec = records()\n"
      "assert(rec:find('\"from\":\"beagle@example.com\",\"to\":[\"lua@example.com\"],'\n"
      "  .. '\"auth_user\":\"alice\",\"auth_password\":\"pw x\",'\n"
      "  .. '\"data\":\"Subject: from lua\\\\r\\\\n\\\\r\\\\nhello\\\\r\\\\n\"}', 1, true), rec)");
  ASSERT_EQ_INT(count_lines(sink_records()), before + 1);
  ASSERT_EQ_INT(bg_fetcher_active(fetcher), 0); /* the timed-out run's mail was canceled */

  /* argument errors raise (ending the run), naming the field */
  static const struct {
    const char *args, *err;
  } bad[] = {
      {"{ from = 'a@b', to = 'c@d', message = 'x' }", "bg.mail: 'url' is required"},
      {"{ url = 'http://x', from = 'a@b', to = 'c@d', message = 'x' }",
       "bg.mail: 'url' must start with smtp:// or smtps://"},
      {"{ url = 'smtp://x', to = 'c@d', message = 'x' }", "bg.mail: 'from' is required"},
      {"{ url = 'smtp://x', from = 'a@b', to = {}, message = 'x' }",
       "bg.mail: 'to' needs at least one address"},
      {"{ url = 'smtp://x', from = 'a@b', message = 'x' }",
       "bg.mail: 'to' needs at least one address"},
      {"{ url = 'smtp://x', from = 'a@b', to = { 'c@d', 5 }, message = 'x' }",
       "bg.mail: 'to' must be a list of addresses"},
      {"{ url = 'smtp://x', from = 'a@b', to = { '' }, message = 'x' }",
       "bg.mail: empty address in 'to'"},
      {"{ url = 'smtp://x', from = 'a@b', to = 'c@d\\r\\nDATA', message = 'x' }",
       "bg.mail: line break in 'to'"},
      {"{ url = 'smtp://x', from = 'a@b', to = { 'c@d', 'e@f\\0' }, message = 'x' }",
       "bg.mail: 'to' may not contain NUL bytes"},
      {"{ url = 'smtp://x', from = 'a@b', to = 'c@d' }", "bg.mail: 'message' is required"},
      {"{ url = 'smtp://x', from = 'a@b', to = 'c@d', message = 'x', password = 'p' }",
       "bg.mail: 'password' needs 'username'"},
      {"{ url = 'smtp://x', from = 'a@b', to = 'c@d', message = 'x', username = 'u', "
       "password = 'p\\0w' }",
       "bg.mail: 'password' may not contain NUL bytes"},
      {"{ url = 'smtp://x', from = 'a@b', to = 'c@d', message = 'x', starttls = 'yes' }",
       "bg.mail: 'starttls' must be a boolean"},
      {"{ url = 'smtp://x', from = 'a@b', to = 'c@d', message = 'x', username = {} }",
       "bg.mail: 'username' must be a string, not table"},
  };
  int n = (int)(sizeof bad / sizeof bad[0]);
  char code[512];
  lua_newtable(H);
  lua_setglobal(H, "BAD");
  for (int i = 0; i < n; i++) {
    snprintf(code, sizeof code, "BAD[%d] = start('mail', %s)", i + 1, bad[i].args);
    host_do(code);
  }
  host_wait(5 + n, 2000);
  for (int i = 0; i < n; i++) {
    lua_getglobal(H, "BAD");
    lua_rawgeti(H, -1, i + 1);
    lua_getfield(H, -1, "ok");
    ASSERT(!lua_toboolean(H, -1));
    lua_getfield(H, -2, "v");
    ASSERT(lua_isstring(H, -1));
    ASSERT_HAS(lua_tostring(H, -1), bad[i].err); /* after the caller's position */
    lua_pop(H, 4);
  }

  host_do("S:close()");
  lua_close(H);
  H = NULL;
}

static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  fprintf(stderr, "handle left open: %s\n", uv_handle_type_name(h->type));
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  loop = uv_default_loop();
  uv_timer_init(loop, &deadline);
  sink_start();
  ASSERT_EQ_INT(bg_fetcher_new(loop, &fetcher), 0);

  RUN(test_send_with_auth);
  RUN(test_send_without_auth);
  RUN(test_smtp_errors);
  RUN(test_refused_and_timeout);
  RUN(test_cancel);
  RUN(test_free_in_flight);
  RUN(test_loop_not_blocked);
  RUN(test_bad_args);
  RUN(test_lua_bindings);

  /* everything closes: uv_run returns once the fetcher and the scripts are gone */
  if (runtime != NULL) bg_script_runtime_close(runtime);
  bg_fetcher_free(fetcher);
  uv_close((uv_handle_t *)&deadline, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  int rc = uv_loop_close(loop);
  if (rc != 0) {
    uv_walk(loop, close_walk, NULL);
    fprintf(stderr, "uv_loop_close: %s\n", uv_strerror(rc));
    return 1;
  }
  printf("all passed\n");
  return 0;
}
