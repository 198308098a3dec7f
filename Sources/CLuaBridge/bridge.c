#define _GNU_SOURCE
#include "CLuaBridge.h"
#include "lua_libs.h"
#include <lua5.1/lua.h>
#include <lua5.1/lauxlib.h>
#include <lua5.1/lualib.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <limits.h>
#include <stdint.h>

struct dfly_lua {
    lua_State *L;
    /* Asked from the count hook whether the running script must stop. */
    dfly_lua_interrupt_fn interrupt;
    void *interrupt_context;
    /* Runs since the last explicit GC step (see dfly_lua_run). */
    int runs_since_gc_step;
};

/* How often (in VM instructions) the hook asks whether to stop the script. */
#define DFLY_HOOK_INSTRUCTIONS 100000

/* An explicit incremental GC step every this many runs, of this many KB, as
   Redis paces it: a step per run made the collector the largest cost of a
   small script (a full cycle every few calls of a tiny heap). */
enum { GC_STEP_PERIOD = 50 };

/* The per-run state reachable from redis.call: kept in a registry slot. */
typedef struct {
    dfly_lua_call_fn call;
    void *context;
    int resp; /* redis.setresp: 2 or 3 */
} run_state;

static run_state *current_run(lua_State *L) {
    lua_getfield(L, LUA_REGISTRYINDEX, "__dfly_run");
    run_state *r = (run_state *)lua_touserdata(L, -1);
    lua_pop(L, 1);
    return r;
}

/* Whether the error the last run (on this thread) replied with was already
 * counted in the error statistics: an error reply of a command the script
 * called (Redis's ignore_error_stats_update field) is counted when that
 * command fails, so the script's own reply must not count it again. */
static _Thread_local int error_precounted;

int dfly_lua_error_precounted(void) { return error_precounted; }

/* Marks the error table at `index` as already counted (Redis 7.0's field). */
static void mark_precounted(lua_State *L, int index) {
    if (index < 0) index = lua_gettop(L) + index + 1;
    lua_pushboolean(L, 1);
    lua_setfield(L, index, "ignore_error_stats_update");
}

static int is_precounted(lua_State *L, int index) {
    if (index < 0) index = lua_gettop(L) + index + 1;
    lua_getfield(L, index, "ignore_error_stats_update");
    int yes = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return yes;
}

/* ---------- a growable buffer for RESP output ---------- */

typedef struct { char *data; size_t len, cap; } buf;

static void buf_put(buf *b, const void *p, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->len + n + 1) cap *= 2;
        b->data = realloc(b->data, cap);
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}
static void buf_str(buf *b, const char *s) { buf_put(b, s, strlen(s)); }
static void buf_fmt(buf *b, const char *fmt, long long v) {
    char tmp[64];
    int n = snprintf(tmp, sizeof(tmp), fmt, v);
    buf_put(b, tmp, (size_t)n);
}
static void buf_bulk(buf *b, const char *s, size_t n) {
    buf_fmt(b, "$%lld\r\n", (long long)n);
    buf_put(b, s, n);
    buf_put(b, "\r\n", 2);
}
static void buf_line(buf *b, char prefix, const char *s, size_t n) {
    buf_put(b, &prefix, 1);
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '\r' || c == '\n') c = ' ';
        buf_put(b, &c, 1);
    }
    buf_put(b, "\r\n", 2);
}

/* ---------- RESP reply -> Lua value (Redis's conversion rules) ---------- */

static const char *read_line(const char *p, const char *end, size_t *len) {
    const char *q = p;
    while (q + 1 < end && !(q[0] == '\r' && q[1] == '\n')) q++;
    *len = (size_t)(q - p);
    return q + 2 <= end ? q + 2 : end;
}

static const char *push_reply(lua_State *L, const char *p, const char *end) {
    if (p >= end) { lua_pushnil(L); return end; }
    char type = *p++;
    size_t len;
    const char *line = p;
    const char *next = read_line(p, end, &len);
    char tmp[128];
    size_t cl = len < sizeof(tmp) - 1 ? len : sizeof(tmp) - 1;
    memcpy(tmp, line, cl);
    tmp[cl] = 0;
    switch (type) {
    case '+':
        lua_newtable(L);
        lua_pushlstring(L, line, len);
        lua_setfield(L, -2, "ok");
        return next;
    case '-':
        lua_newtable(L);
        lua_pushlstring(L, line, len);
        lua_setfield(L, -2, "err");
        return next;
    case ':':
        lua_pushnumber(L, (lua_Number)strtoll(tmp, NULL, 10));
        return next;
    case '(':
        lua_newtable(L);
        lua_pushlstring(L, line, len);
        lua_setfield(L, -2, "big_number");
        return next;
    case ',':
        lua_newtable(L);
        lua_pushnumber(L, strtod(tmp, NULL));
        lua_setfield(L, -2, "double");
        return next;
    case '#':
        lua_pushboolean(L, tmp[0] == 't');
        return next;
    case '_':
        lua_pushnil(L);
        return next;
    case '$':
    case '=': {
        long long n = strtoll(tmp, NULL, 10);
        if (n < 0) { lua_pushboolean(L, 0); return next; }
        const char *data = next;
        if (type == '=' && n >= 4) { data += 4; n -= 4; }
        lua_pushlstring(L, data, (size_t)n);
        return next + (type == '=' ? n + 4 : n) + 2;
    }
    case '*':
    case '~':
    case '>': {
        long long n = strtoll(tmp, NULL, 10);
        if (n < 0) { lua_pushboolean(L, 0); return next; }
        lua_newtable(L);
        if (type == '~') {
            lua_newtable(L);
            for (long long i = 0; i < n; i++) {
                next = push_reply(L, next, end);
                lua_pushboolean(L, 1);
                lua_settable(L, -3);
            }
            lua_setfield(L, -2, "set");
            return next;
        }
        for (long long i = 0; i < n; i++) {
            next = push_reply(L, next, end);
            lua_rawseti(L, -2, (int)(i + 1));
        }
        return next;
    }
    case '%': {
        long long n = strtoll(tmp, NULL, 10);
        lua_newtable(L);
        lua_newtable(L);
        for (long long i = 0; i < n; i++) {
            next = push_reply(L, next, end);
            next = push_reply(L, next, end);
            lua_settable(L, -3);
        }
        lua_setfield(L, -2, "map");
        return next;
    }
    default:
        lua_pushnil(L);
        return end;
    }
}

/* ---------- Lua value -> RESP (the script's result) ---------- */

static void encode_value(lua_State *L, int index, buf *out, int resp, int depth);

static int table_field(lua_State *L, int index, const char *name, int type) {
    lua_pushstring(L, name);
    lua_rawget(L, index);
    if (lua_type(L, -1) == type) return 1;
    lua_pop(L, 1);
    return 0;
}

static void encode_value(lua_State *L, int index, buf *out, int resp, int depth) {
    if (index < 0) index = lua_gettop(L) + index + 1;
    if (depth > 64) { buf_str(out, "-ERR reached lua stack limit\r\n"); return; }
    switch (lua_type(L, index)) {
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, index, &n);
        buf_bulk(out, s, n);
        return;
    }
    case LUA_TBOOLEAN: {
        run_state *r = current_run(L);
        int script_resp = r ? r->resp : 2;
        if (script_resp == 3 && resp == 3) {
            buf_str(out, lua_toboolean(L, index) ? "#t\r\n" : "#f\r\n");
        } else if (lua_toboolean(L, index)) {
            buf_str(out, ":1\r\n");
        } else {
            buf_str(out, resp == 3 ? "_\r\n" : "$-1\r\n");
        }
        return;
    }
    case LUA_TNUMBER:
        buf_fmt(out, ":%lld\r\n", (long long)lua_tonumber(L, index));
        return;
    case LUA_TTABLE: {
        if (table_field(L, index, "err", LUA_TSTRING)) {
            size_t n;
            const char *s = lua_tolstring(L, -1, &n);
            buf_line(out, '-', s, n);
            lua_pop(L, 1);
            if (depth == 0) error_precounted = is_precounted(L, index);
            return;
        }
        if (table_field(L, index, "ok", LUA_TSTRING)) {
            size_t n;
            const char *s = lua_tolstring(L, -1, &n);
            buf_line(out, '+', s, n);
            lua_pop(L, 1);
            return;
        }
        if (table_field(L, index, "double", LUA_TNUMBER)) {
            char tmp[64];
            double d = lua_tonumber(L, -1);
            lua_pop(L, 1);
            if (isinf(d)) snprintf(tmp, sizeof(tmp), d > 0 ? "inf" : "-inf");
            else snprintf(tmp, sizeof(tmp), "%.17g", d);
            if (resp == 3) { buf_put(out, ",", 1); buf_str(out, tmp); buf_put(out, "\r\n", 2); }
            else buf_bulk(out, tmp, strlen(tmp));
            return;
        }
        if (table_field(L, index, "map", LUA_TTABLE)) {
            int t = lua_gettop(L);
            long long n = 0;
            lua_pushnil(L);
            while (lua_next(L, t)) { n++; lua_pop(L, 1); }
            buf_fmt(out, resp == 3 ? "%%%lld\r\n" : "*%lld\r\n", resp == 3 ? n : n * 2);
            lua_pushnil(L);
            while (lua_next(L, t)) {
                encode_value(L, -2, out, resp, depth + 1);
                encode_value(L, -1, out, resp, depth + 1);
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
            return;
        }
        if (table_field(L, index, "set", LUA_TTABLE)) {
            int t = lua_gettop(L);
            long long n = 0;
            lua_pushnil(L);
            while (lua_next(L, t)) { n++; lua_pop(L, 1); }
            buf_fmt(out, resp == 3 ? "~%lld\r\n" : "*%lld\r\n", n);
            lua_pushnil(L);
            while (lua_next(L, t)) {
                encode_value(L, -2, out, resp, depth + 1);
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
            return;
        }
        /* An array: elements 1..n up to the first nil. */
        long long n = 0;
        for (;;) {
            lua_rawgeti(L, index, (int)(n + 1));
            int nil = lua_isnil(L, -1);
            lua_pop(L, 1);
            if (nil) break;
            n++;
        }
        buf_fmt(out, "*%lld\r\n", n);
        for (long long i = 1; i <= n; i++) {
            lua_rawgeti(L, index, (int)i);
            encode_value(L, -1, out, resp, depth + 1);
            lua_pop(L, 1);
        }
        return;
    }
    default:
        buf_str(out, resp == 3 ? "_\r\n" : "$-1\r\n");
        return;
    }
}

/* ---------- redis.* ---------- */

/* Raises {err=message}: Redis 7 raises errors of the redis.* API as error
 * tables (no "user_script:N:" position in the text; the error handler adds
 * where it happened as fields). */
static int raise_error_table(lua_State *L, const char *message) {
    lua_newtable(L);
    lua_pushstring(L, message);
    lua_setfield(L, -2, "err");
    return lua_error(L);
}

/* How redis_call_common reports: redis.pcall returns errors as tables,
 * redis.call raises them, redis.acl_check_cmd only asks the ACL. */
enum call_mode { CALL_PCALL, CALL_RAISE, CALL_ACL_CHECK };

/* An argument error: raised by redis.call and redis.acl_check_cmd, returned by redis.pcall. */
static int argument_error(lua_State *L, enum call_mode mode, const char *message) {
    if (mode != CALL_PCALL) return raise_error_table(L, message);
    lua_newtable(L);
    lua_pushstring(L, message);
    lua_setfield(L, -2, "err");
    return 1;
}

static int redis_call_common(lua_State *L, enum call_mode mode) {
    run_state *r = current_run(L);
    int argc = lua_gettop(L);
    if (argc == 0) return argument_error(L, mode, "ERR Please specify at least one argument for this redis lib call");
    /* Most calls have a handful of arguments: no allocation for those. */
    enum { INLINE_ARGS = 16 };
    const char *inline_argv[INLINE_ARGS];
    size_t inline_lens[INLINE_ARGS];
    int heap = argc > INLINE_ARGS;
    const char **argv = heap ? malloc(sizeof(char *) * (size_t)argc) : inline_argv;
    size_t *lens = heap ? malloc(sizeof(size_t) * (size_t)argc) : inline_lens;
    for (int i = 0; i < argc; i++) {
        int t = lua_type(L, i + 1);
        if (t != LUA_TSTRING && t != LUA_TNUMBER) {
            if (heap) { free(argv); free(lens); }
            return argument_error(L, mode, "ERR Lua redis lib command arguments must be strings or integers");
        }
        if (t == LUA_TNUMBER) {
            /* Redis converts numbers with %.17g, integers without a fraction. */
            lua_Number n = lua_tonumber(L, i + 1);
            char tmp[64];
            if (n == (lua_Number)(long long)n) snprintf(tmp, sizeof(tmp), "%lld", (long long)n);
            else snprintf(tmp, sizeof(tmp), "%.17g", (double)n);
            lua_pushstring(L, tmp);
            lua_replace(L, i + 1);
        }
        argv[i] = lua_tolstring(L, i + 1, &lens[i]);
    }
    char *out = NULL;
    size_t outlen = 0;
    r->call(r->context, argc, argv, lens, mode == CALL_ACL_CHECK ? DFLY_LUA_ACL_CHECK : r->resp, &out, &outlen);
    if (heap) { free(argv); free(lens); }
    if (mode == CALL_ACL_CHECK) {
        /* ":1" / ":0", or the error for a command that does not exist (raised). */
        int allowed = outlen > 1 && out[0] == ':' && out[1] == '1';
        if (outlen > 0 && out[0] == '-') {
            size_t n;
            read_line(out + 1, out + outlen, &n);
            lua_newtable(L);
            lua_pushlstring(L, out + 1, n);
            lua_setfield(L, -2, "err");
            free(out);
            return lua_error(L);
        }
        free(out);
        lua_pushboolean(L, allowed);
        return 1;
    }
    if (mode == CALL_RAISE && outlen > 0 && out[0] == '-') {
        /* redis.call raises the error as a table {err=...}; the failed
         * command counted it already. */
        size_t n;
        const char *line = out + 1;
        read_line(line, out + outlen, &n);
        lua_newtable(L);
        lua_pushlstring(L, line, n);
        lua_setfield(L, -2, "err");
        mark_precounted(L, -1);
        free(out);
        return lua_error(L);
    }
    push_reply(L, out, out + outlen);
    if (outlen > 0 && out[0] == '-') mark_precounted(L, -1);
    free(out);
    return 1;
}

static int redis_call(lua_State *L) { return redis_call_common(L, CALL_RAISE); }
static int redis_pcall(lua_State *L) { return redis_call_common(L, CALL_PCALL); }
/* redis.acl_check_cmd(cmd, ...): whether the script's user may run the command
 * with these arguments (Redis's ACLCheckAllUserCommandPerm); raises for an
 * unknown command. */
static int redis_acl_check_cmd(lua_State *L) { return redis_call_common(L, CALL_ACL_CHECK); }

/* As Redis 7.0 (luaPushErrorBuff): a leading '-' is dropped, and a message
 * without a space has no error code of its own, so it gets "ERR ":
 * error_reply('oops') is "ERR oops", error_reply('WRONG thing') stays. */
static int redis_error_reply(lua_State *L) {
    const char *msg = luaL_checkstring(L, 1);
    if (msg[0] == '-') msg++;
    lua_newtable(L);
    if (strchr(msg, ' ') == NULL) {
        lua_pushfstring(L, "ERR %s", msg);
    } else {
        lua_pushstring(L, msg);
    }
    lua_setfield(L, -2, "err");
    return 1;
}

static int redis_status_reply(lua_State *L) {
    const char *msg = luaL_checkstring(L, 1);
    lua_newtable(L);
    lua_pushstring(L, msg);
    lua_setfield(L, -2, "ok");
    return 1;
}

/* unpack(t [, i [, j]]) with its element count checked in 64 bits: the system Lua 5.1's
 * own unpack computes j - i + 1 in an int, so unpack({}, -2, 2147483647) wraps, skips the
 * stack check and writes past the stack (a crash any EVAL could cause). Redis's bundled
 * Lua has the same check; the error text is Lua's. */
static int safe_unpack(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    int i = luaL_optint(L, 2, 1);
    int e = luaL_opt(L, luaL_checkint, 3, (int)lua_objlen(L, 1));
    if (i > e) return 0;
    long long n = (long long)e - (long long)i + 1;
    if (n <= 0 || n >= INT_MAX || !lua_checkstack(L, (int)n))
        return luaL_error(L, "too many results to unpack");
    for (long long k = 0; k < n; k++) lua_rawgeti(L, 1, (int)(i + k));
    return (int)n;
}

/* A Lua number as the bit library reads it: its low 32 bits, for any value. */
static int32_t bit_arg(lua_State *L, int index) {
    union { lua_Number n; uint64_t b; } v;
    v.n = luaL_checknumber(L, index) + 6755399441055744.0; /* 2^52 + 2^51: integer in the low bits */
    return (int32_t)v.b;
}

/* bit.tohex(x [, n]) with n = -2^31 handled: lua-bitop negates n to get the digit count,
 * which overflows for INT32_MIN and writes past its buffer (a crash any EVAL could cause).
 * As in Redis's bundled copy, -2^31 means 2^31 - 1 upper-case digits, capped at 8. */
static int safe_bit_tohex(lua_State *L) {
    uint32_t x = (uint32_t)bit_arg(L, 1);
    int32_t n = lua_isnone(L, 2) ? 8 : bit_arg(L, 2);
    const char *digits = "0123456789abcdef";
    char buf[8];
    if (n == INT32_MIN) n = INT32_MIN + 1;
    if (n < 0) { n = -n; digits = "0123456789ABCDEF"; }
    if (n > 8) n = 8;
    for (int i = n - 1; i >= 0; i--) { buf[i] = digits[x & 15]; x >>= 4; }
    lua_pushlstring(L, buf, (size_t)n);
    return 1;
}

/* Redis's luaRedisSha1hexCommand: exactly one argument, else a bare
 * "wrong number of arguments" error (no position, as Redis raises it). */
static int redis_sha1hex(lua_State *L) {
    if (lua_gettop(L) != 1) {
        lua_pushstring(L, "wrong number of arguments");
        return lua_error(L);
    }
    size_t n = 0;
    const char *s = lua_tolstring(L, 1, &n);
    if (!s) { s = ""; n = 0; }
    char hex[41];
    dfly_sha1_hex(s, n, hex);
    lua_pushstring(L, hex);
    return 1;
}

static int redis_log(lua_State *L) { (void)L; return 0; }

static int redis_setresp(lua_State *L) {
    int v = (int)luaL_checkinteger(L, 1);
    if (v != 2 && v != 3) return raise_error_table(L, "ERR RESP version must be 2 or 3.");
    run_state *r = current_run(L);
    if (r) r->resp = v;
    return 0;
}

static int redis_noop(lua_State *L) { (void)L; return 0; }
static int redis_true(lua_State *L) { lua_pushboolean(L, 1); return 1; }

/* Redis 7's sandbox: the globals and the library tables are read-only and
 * reading an undefined global is an error. Stock Lua 5.1 has no read-only
 * tables, so each protected table is an empty proxy whose metatable reads
 * through to the real table and refuses writes; setmetatable and rawset
 * refuse protected tables too (otherwise a script could strip the proxy and
 * leave changes behind for the next script on this thread). */
static const char readonly_marker = 0;

static int readonly_newindex(lua_State *L) {
    return luaL_error(L, "Attempt to modify a readonly table");
}

static int is_protected(lua_State *L, int index) {
    if (!lua_getmetatable(L, index)) return 0;
    lua_pushlightuserdata(L, (void *)&readonly_marker);
    lua_rawget(L, -2);
    int protected = lua_toboolean(L, -1);
    lua_pop(L, 2);
    return protected;
}

/* Pushes a read-only proxy for the table at `index`. */
static void push_readonly_proxy(lua_State *L, int index) {
    if (index < 0) index = lua_gettop(L) + index + 1;
    lua_newtable(L);
    lua_newtable(L);
    lua_pushvalue(L, index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, readonly_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushlightuserdata(L, (void *)&readonly_marker);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
    /* getmetatable() must not hand out the real table behind __index. */
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
}

static int guarded_setmetatable(lua_State *L) {
    if (lua_istable(L, 1) && is_protected(L, 1)) return raise_error_table(L, "ERR Attempt to modify a readonly table");
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

static int guarded_rawset(lua_State *L) {
    if (lua_istable(L, 1) && is_protected(L, 1)) return raise_error_table(L, "ERR Attempt to modify a readonly table");
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

/* Wraps the global `name` (a C function) so it refuses protected tables. */
static void guard_builtin(lua_State *L, const char *name, lua_CFunction guard) {
    lua_getglobal(L, name);
    lua_pushcclosure(L, guard, 1);
    lua_setglobal(L, name);
}

/* Redis 7's pcall: an error table caught by pcall comes back as its `err`
 * string, so `local ok, e = pcall(redis.call, ...)` gets the message. */
static int redis7_pcall(lua_State *L) {
    luaL_checkany(L, 1);
    int argc = lua_gettop(L);
    lua_pushboolean(L, 1);
    lua_insert(L, 1);
    if (lua_pcall(L, argc - 1, LUA_MULTRET, 0) != 0) {
        lua_remove(L, 1);
        if (lua_istable(L, -1)) {
            lua_getfield(L, -1, "err");
            if (lua_isstring(L, -1)) lua_replace(L, -2);
            else lua_pop(L, 1);
        }
        lua_pushboolean(L, 0);
        lua_insert(L, 1);
    }
    return lua_gettop(L);
}

/* ---------- time limit and SCRIPT KILL ---------- */

static dfly_lua *owner_of(lua_State *L) {
    lua_getfield(L, LUA_REGISTRYINDEX, "__dfly_lua");
    dfly_lua *lua = (dfly_lua *)lua_touserdata(L, -1);
    lua_pop(L, 1);
    return lua;
}

/* Runs every DFLY_HOOK_INSTRUCTIONS instructions: lets the server note the
 * script is slow (BUSY for other clients) and stop it on SCRIPT KILL. Once
 * killed, the hook fires on every new line, as in Redis, so a script that
 * catches the error with pcall is stopped again at its next line. */
static void interrupt_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    dfly_lua *lua = owner_of(L);
    if (!lua || !lua->interrupt || !lua->interrupt(lua->interrupt_context)) return;
    lua_sethook(L, interrupt_hook, LUA_MASKLINE, 0);
    raise_error_table(L, "ERR Script killed by user with SCRIPT KILL...");
}

void dfly_lua_set_interrupt(dfly_lua *lua, dfly_lua_interrupt_fn fn, void *context) {
    lua->interrupt = fn;
    lua->interrupt_context = context;
}

/* ---------- no bytecode ---------- */

/* Redis's Lua refuses precompiled chunks (its parser has no binary branch:
 * bytecode is unchecked by the VM and can crash it). Debian's liblua5.1 still
 * loads them, so loadstring and load hand every chunk to the text parser: a
 * chunk starting with the bytecode signature gets a blank in front, which
 * makes the text parser reject it just as Redis's does ("unexpected symbol
 * near 'char(27)'"). */
static int load_text(lua_State *L, const char *code, size_t length, const char *chunkname) {
    int status;
    if (length > 0 && code[0] == LUA_SIGNATURE[0]) {
        char *spaced = malloc(length + 1);
        if (!spaced) return luaL_error(L, "not enough memory");
        spaced[0] = ' ';
        memcpy(spaced + 1, code, length);
        status = luaL_loadbuffer(L, spaced, length + 1, chunkname);
        free(spaced);
    } else {
        status = luaL_loadbuffer(L, code, length, chunkname);
    }
    if (status == 0) return 1;
    lua_pushnil(L);
    lua_insert(L, -2); /* nil, message */
    return 2;
}

/* loadstring(s [, chunkname]), as Lua 5.1's, text only. */
static int text_loadstring(lua_State *L) {
    size_t length;
    const char *code = luaL_checklstring(L, 1, &length);
    const char *chunkname = luaL_optstring(L, 2, code);
    return load_text(L, code, length, chunkname);
}

/* load(reader [, chunkname]), as Lua 5.1's: the pieces the reader returns
 * (until nil or "") make the chunk, text only. */
static int text_load(lua_State *L) {
    luaL_checktype(L, 1, LUA_TFUNCTION);
    const char *chunkname = luaL_optstring(L, 2, "=(load)");
    lua_settop(L, 2);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (;;) {
        lua_pushvalue(L, 1);
        lua_call(L, 0, 1);
        if (lua_isnil(L, -1)) { lua_pop(L, 1); break; }
        if (!lua_isstring(L, -1)) return luaL_error(L, "reader function must return a string");
        if (lua_objlen(L, -1) == 0) { lua_pop(L, 1); break; }
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    size_t length;
    const char *code = lua_tolstring(L, -1, &length);
    return load_text(L, code, length, chunkname);
}

static int global_index(lua_State *L) {
    const char *name = lua_tostring(L, 2);
    return luaL_error(L, "Script attempted to access nonexistent global variable '%s'", name ? name : "?");
}

static void load_module(lua_State *L, const char *library, const char *symbol, const char *name) {
    void *handle = dlopen(library, RTLD_NOW | RTLD_GLOBAL);
    if (!handle) return;
    lua_CFunction open = (lua_CFunction)dlsym(handle, symbol);
    if (!open) return;
    lua_pushcfunction(L, open);
    lua_pushstring(L, name);
    lua_call(L, 1, 1);
    lua_setglobal(L, name);
}

dfly_lua *dfly_lua_create(void) {
    dfly_lua *lua = calloc(1, sizeof(*lua));
    lua_State *L = luaL_newstate();
    lua->L = L;
    /* Only the libraries Redis exposes: no io, os, package, debug. */
    lua_pushcfunction(L, luaopen_base); lua_pushstring(L, ""); lua_call(L, 1, 0);
    lua_pushcfunction(L, luaopen_table); lua_pushstring(L, LUA_TABLIBNAME); lua_call(L, 1, 0);
    lua_pushcfunction(L, luaopen_string); lua_pushstring(L, LUA_STRLIBNAME); lua_call(L, 1, 0);
    lua_pushcfunction(L, luaopen_math); lua_pushstring(L, LUA_MATHLIBNAME); lua_call(L, 1, 0);
    load_module(L, "liblua5.1-cjson.so.0", "luaopen_cjson", "cjson");
    load_module(L, "liblua5.1-bitop.so.0", "luaopen_bit", "bit");
    lua_getglobal(L, "bit");
    if (lua_istable(L, -1)) { lua_pushcfunction(L, safe_bit_tohex); lua_setfield(L, -2, "tohex"); }
    lua_pop(L, 1);
    dfly_open_cmsgpack(L);
    dfly_open_struct(L);
    lua_pushnil(L); lua_setglobal(L, "loadfile");
    lua_pushnil(L); lua_setglobal(L, "dofile");
    /* Redis 7.0 removed print (it wrote to the server's stdout). */
    lua_pushnil(L); lua_setglobal(L, "print");
    lua_pushcfunction(L, text_loadstring); lua_setglobal(L, "loadstring");
    lua_pushcfunction(L, text_load); lua_setglobal(L, "load");
    lua_pushcfunction(L, safe_unpack); lua_setglobal(L, "unpack");

    lua_newtable(L);
    lua_pushcfunction(L, redis_call); lua_setfield(L, -2, "call");
    lua_pushcfunction(L, redis_pcall); lua_setfield(L, -2, "pcall");
    lua_pushcfunction(L, redis_error_reply); lua_setfield(L, -2, "error_reply");
    lua_pushcfunction(L, redis_status_reply); lua_setfield(L, -2, "status_reply");
    lua_pushcfunction(L, redis_sha1hex); lua_setfield(L, -2, "sha1hex");
    lua_pushcfunction(L, redis_acl_check_cmd); lua_setfield(L, -2, "acl_check_cmd");
    lua_pushcfunction(L, redis_log); lua_setfield(L, -2, "log");
    lua_pushcfunction(L, redis_setresp); lua_setfield(L, -2, "setresp");
    lua_pushcfunction(L, redis_noop); lua_setfield(L, -2, "set_repl");
    lua_pushcfunction(L, redis_true); lua_setfield(L, -2, "replicate_commands");
    lua_pushstring(L, "7.0.15"); lua_setfield(L, -2, "REDIS_VERSION");
    lua_pushnumber(L, 0x07000f); lua_setfield(L, -2, "REDIS_VERSION_NUM");
    lua_pushnumber(L, 0); lua_setfield(L, -2, "LOG_DEBUG");
    lua_pushnumber(L, 1); lua_setfield(L, -2, "LOG_VERBOSE");
    lua_pushnumber(L, 2); lua_setfield(L, -2, "LOG_NOTICE");
    lua_pushnumber(L, 3); lua_setfield(L, -2, "LOG_WARNING");
    lua_pushnumber(L, 0); lua_setfield(L, -2, "REPL_NONE");
    lua_pushnumber(L, 3); lua_setfield(L, -2, "REPL_ALL");
    lua_setglobal(L, "redis");
    lua_pushcfunction(L, redis7_pcall); lua_setglobal(L, "pcall");
    guard_builtin(L, "setmetatable", guarded_setmetatable);
    guard_builtin(L, "rawset", guarded_rawset);

    /* Library tables become read-only proxies. */
    static const char *const libraries[] = {
        "redis", "string", "table", "math", "cjson", "bit", "cmsgpack", "struct", NULL
    };
    for (int i = 0; libraries[i]; i++) {
        lua_getglobal(L, libraries[i]);
        if (lua_istable(L, -1)) {
            push_readonly_proxy(L, -1);
            lua_setglobal(L, libraries[i]);
        }
        lua_pop(L, 1);
    }
    /* Strings' metatable: methods go through the read-only string table, and
     * getmetatable('') gives a read-only view of the metatable (its entries
     * must stay raw fields: Lua reads metamethods without metamethods). */
    lua_pushliteral(L, "");
    if (lua_getmetatable(L, -1)) {
        lua_getglobal(L, "string");
        lua_setfield(L, -2, "__index");
        push_readonly_proxy(L, -1);
        lua_setfield(L, -2, "__metatable");
        lua_pop(L, 1);
    }
    lua_pop(L, 1);

    /* The globals: undefined names raise; the scripts see a read-only proxy. */
    lua_pushvalue(L, LUA_GLOBALSINDEX);
    int real = lua_gettop(L);
    lua_newtable(L);
    lua_pushcfunction(L, global_index); lua_setfield(L, -2, "__index");
    lua_setmetatable(L, real);
    push_readonly_proxy(L, real);
    /* getmetatable(_G) is a table in Redis 7: a read-only one holding the
     * sandbox's two metamethods (not the real globals). */
    lua_getmetatable(L, -1);
    lua_newtable(L);
    lua_pushcfunction(L, global_index); lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, readonly_newindex); lua_setfield(L, -2, "__newindex");
    push_readonly_proxy(L, -1);
    lua_setfield(L, -3, "__metatable");
    lua_pop(L, 2);
    lua_pushvalue(L, -1);
    lua_setfield(L, real, "_G");
    lua_replace(L, LUA_GLOBALSINDEX);
    lua_pop(L, 1);

    lua_pushlightuserdata(L, lua);
    lua_setfield(L, LUA_REGISTRYINDEX, "__dfly_lua");
    lua_sethook(L, interrupt_hook, LUA_MASKCOUNT, DFLY_HOOK_INSTRUCTIONS);
    return lua;
}

void dfly_lua_destroy(dfly_lua *lua) {
    lua_close(lua->L);
    free(lua);
}

static void function_name(const char *sha, char name[43]) {
    name[0] = 'f';
    name[1] = '_';
    memcpy(name + 2, sha, 40);
    name[42] = 0;
}

int dfly_lua_load(dfly_lua *lua, const char *sha, const char *body, size_t length, char **error) {
    lua_State *L = lua->L;
    char name[43];
    function_name(sha, name);
    if (luaL_loadbuffer(L, body, length, "@user_script") != 0) {
        *error = strdup(lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    /* Store the compiled chunk in the registry (not a global: globals are locked). */
    lua_setfield(L, LUA_REGISTRYINDEX, name);
    return 0;
}

size_t dfly_lua_memory(dfly_lua *lua) {
    return (size_t)lua_gc(lua->L, LUA_GCCOUNT, 0) * 1024 + (size_t)lua_gc(lua->L, LUA_GCCOUNTB, 0);
}

int dfly_lua_has(dfly_lua *lua, const char *sha) {
    char name[43];
    function_name(sha, name);
    lua_getfield(lua->L, LUA_REGISTRYINDEX, name);
    int present = lua_isfunction(lua->L, -1);
    lua_pop(lua->L, 1);
    return present;
}

void dfly_lua_flush(dfly_lua *lua) {
    /* Simplest faithful flush: a new interpreter. */
    lua_State *old = lua->L;
    dfly_lua *fresh = dfly_lua_create();
    lua->L = fresh->L;
    free(fresh);
    lua_pushlightuserdata(lua->L, lua);
    lua_setfield(lua->L, LUA_REGISTRYINDEX, "__dfly_lua");
    lua_close(old);
}

static void set_array(lua_State *L, const char *name, int count, const char **items, const size_t *lengths) {
    lua_newtable(L);
    for (int i = 0; i < count; i++) {
        lua_pushlstring(L, items[i], lengths[i]);
        lua_rawseti(L, -2, i + 1);
    }
    /* KEYS/ARGV are set with rawset past the locked metatable. */
    lua_pushstring(L, name);
    lua_insert(L, -2);
    lua_rawset(L, LUA_GLOBALSINDEX);
}

/* As Redis 7's error handler: whatever was raised becomes an error table
 * ({err='ERR ' .. tostring(e)} unless it is one already) that also records
 * where the script was (the caller's position when a C function such as
 * redis.call or error raised it), for the " script: ..., on ..." suffix. */
int dfly_bridge_error_handler(lua_State *L) {
    lua_Debug ar;
    int located = lua_getstack(L, 1, &ar) && lua_getinfo(L, "Sl", &ar);
    if (located && strcmp(ar.what, "C") == 0) located = lua_getstack(L, 2, &ar) && lua_getinfo(L, "Sl", &ar);
    if (!lua_istable(L, 1)) {
        const char *text;
        char other[64];
        switch (lua_type(L, 1)) {
        case LUA_TSTRING: case LUA_TNUMBER: text = lua_tostring(L, 1); break;
        case LUA_TNIL: text = "nil"; break;
        case LUA_TBOOLEAN: text = lua_toboolean(L, 1) ? "true" : "false"; break;
        default:
            snprintf(other, sizeof(other), "%s: %p", luaL_typename(L, 1), lua_topointer(L, 1));
            text = other;
        }
        lua_newtable(L);
        lua_pushfstring(L, "ERR %s", text);
        lua_setfield(L, -2, "err");
        lua_replace(L, 1);
    }
    if (located) {
        lua_pushstring(L, ar.source);
        lua_setfield(L, 1, "source");
        lua_pushinteger(L, ar.currentline);
        lua_setfield(L, 1, "line");
    }
    lua_settop(L, 1);
    return 1;
}

int dfly_lua_run(dfly_lua *lua, const char *sha,
                 int key_count, const char **keys, const size_t *key_lengths,
                 int arg_count, const char **args, const size_t *arg_lengths,
                 int client_resp, dfly_lua_call_fn call, void *context,
                 char **out, size_t *out_length) {
    lua_State *L = lua->L;
    char name[43];
    function_name(sha, name);
    lua_pushcfunction(L, dfly_bridge_error_handler);
    int handler = lua_gettop(L);
    lua_getfield(L, LUA_REGISTRYINDEX, name);
    if (!lua_isfunction(L, -1)) {
        lua_pop(L, 2);
        return -1;
    }
    run_state run = { call, context, 2 };
    lua_pushlightuserdata(L, &run);
    lua_setfield(L, LUA_REGISTRYINDEX, "__dfly_run");
    set_array(L, "KEYS", key_count, keys, key_lengths);
    set_array(L, "ARGV", arg_count, args, arg_lengths);
    /* A killed run left the hook on every line: back to counting. */
    lua_sethook(L, interrupt_hook, LUA_MASKCOUNT, DFLY_HOOK_INSTRUCTIONS);
    buf result = { 0 };
    error_precounted = 0;
    if (lua_pcall(L, 0, 1, handler) != 0) {
        if (lua_istable(L, -1)) {
            /* Redis 7: "<err> script: <sha>, on <source>:<line>." */
            int t = lua_gettop(L);
            error_precounted = is_precounted(L, t);
            lua_getfield(L, t, "err");
            lua_getfield(L, t, "source");
            lua_getfield(L, t, "line");
            buf message = { 0 };
            if (lua_isstring(L, -3)) {
                size_t n;
                const char *s = lua_tolstring(L, -3, &n);
                buf_put(&message, s, n);
            } else {
                buf_str(&message, "ERR Error running script: the error raised is not a string");
            }
            if (lua_isstring(L, -2) && lua_isnumber(L, -1)) {
                buf_str(&message, " script: ");
                buf_str(&message, sha);
                buf_str(&message, ", on ");
                buf_str(&message, lua_tostring(L, -2));
                buf_fmt(&message, ":%lld.", (long long)lua_tonumber(L, -1));
            }
            buf_line(&result, '-', message.data, message.len);
            free(message.data);
            lua_pop(L, 3);
        } else {
            const char *message = lua_tostring(L, -1);
            char line[1024];
            snprintf(line, sizeof(line), "ERR Error running script (call to f_%s): %s", sha, message ? message : "unknown error");
            buf_line(&result, '-', line, strlen(line));
        }
        lua_pop(L, 1);
    } else {
        encode_value(L, -1, &result, client_resp, 0);
        lua_pop(L, 1);
    }
    lua_pop(L, 1); /* handler */
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "__dfly_run");
    if (++lua->runs_since_gc_step >= GC_STEP_PERIOD) {
        lua->runs_since_gc_step = 0;
        lua_gc(L, LUA_GCSTEP, GC_STEP_PERIOD);
    }
    *out = result.data;
    *out_length = result.len;
    return 0;
}

/* ---------- SHA1 (FIPS 180-1) ---------- */

static uint32_t rol(uint32_t v, int n) { return (v << n) | (v >> (32 - n)); }

void dfly_sha1_hex(const void *data, size_t length, char out[41]) {
    uint32_t h[5] = { 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0 };
    size_t total = ((length + 8) / 64 + 1) * 64;
    unsigned char *m = calloc(total, 1);
    memcpy(m, data, length);
    m[length] = 0x80;
    uint64_t bits = (uint64_t)length * 8;
    for (int i = 0; i < 8; i++) m[total - 1 - i] = (unsigned char)(bits >> (8 * i));
    for (size_t off = 0; off < total; off += 64) {
        uint32_t w[80];
        for (int i = 0; i < 16; i++)
            w[i] = ((uint32_t)m[off + 4 * i] << 24) | ((uint32_t)m[off + 4 * i + 1] << 16) |
                   ((uint32_t)m[off + 4 * i + 2] << 8) | (uint32_t)m[off + 4 * i + 3];
        for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 80; i++) {
            uint32_t f, k;
            if (i < 20) { f = (b & c) | (~b & d); k = 0x5A827999; }
            else if (i < 40) { f = b ^ c ^ d; k = 0x6ED9EBA1; }
            else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDC; }
            else { f = b ^ c ^ d; k = 0xCA62C1D6; }
            uint32_t t = rol(a, 5) + f + e + k + w[i];
            e = d; d = c; c = rol(b, 30); b = a; a = t;
        }
        h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
    }
    free(m);
    for (int i = 0; i < 5; i++) snprintf(out + 8 * i, 9, "%08x", h[i]);
}

/* ---------- entry points for functions.c (bridge_internal.h) ---------- */

#include "bridge_internal.h"

lua_State *dfly_bridge_state(dfly_lua *lua) { return lua->L; }

void *dfly_bridge_begin_run(lua_State *L, dfly_lua_call_fn call, void *context) {
    error_precounted = 0;
    run_state *run = calloc(1, sizeof(run_state));
    run->call = call;
    run->context = context;
    run->resp = 2;
    lua_pushlightuserdata(L, run);
    lua_setfield(L, LUA_REGISTRYINDEX, "__dfly_run");
    return run;
}

int dfly_bridge_is_precounted(lua_State *L, int index) {
    if (is_precounted(L, index)) error_precounted = 1;
    return error_precounted;
}

void dfly_bridge_end_run(lua_State *L, void *run) {
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "__dfly_run");
    free(run);
}

void dfly_bridge_encode(lua_State *L, int index, int client_resp, char **out, size_t *length) {
    buf b = { *out, *length, *length };
    encode_value(L, index, &b, client_resp, 0);
    *out = b.data;
    *length = b.len;
}
