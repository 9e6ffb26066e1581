/* store_int.h: what store.c and store_health.c share. Not for other modules. */
#ifndef BG_STORE_INT_H
#define BG_STORE_INT_H

#include "store/store.h"

/* The health slot of a file database at path (made on first use, kept for the process), or -1
 * for ":memory:" and when every slot is taken. */
int bg__store_health_slot(const char *path);

/* A failure of op with SQLite's rc and message: counted and, if it is the file's fault (not
 * the SQL's, see store.h), the start of a failing episode, logged once. Returns rc. */
int bg__store_note_error(int slot, int op, int rc, const char *msg);

/* op succeeded: a write or commit (or a read, when the episode began with a read) ends a
 * failing episode, logged once. */
void bg__store_note_ok(int slot, int op);

/* The connection of slot opened (durable, failing cleared) or closed. */
void bg__store_note_open(int slot, int open);

/* The file at path could not be opened for good (the process runs without it), with why. */
void bg__store_note_unusable(int slot, const char *why);

/* The file was moved aside to moved before a fresh one was made. */
void bg__store_note_replaced(int slot, const char *moved, const char *why);

#endif
