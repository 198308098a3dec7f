/* cmsgpack for scripts: the MessagePack library Redis exposes as the global
 * `cmsgpack` (lua-cmsgpack 0.4.0's API and encoding choices), written here
 * from its documented behaviour because Debian ships no Lua 5.1 package for it.
 *
 * Why the choices below: scripts (BullMQ's among them) store packed bytes in
 * keys that other clients decode, so the bytes must be the ones Redis makes:
 * integer-valued numbers take the smallest integer encoding, other numbers
 * float32 when that is exact else float64, strings fixstr/str8/str16/str32,
 * a table is an array when its keys are exactly 1..n, else a map, and tables
 * nested 16 levels deep are packed as nil. */
#include "lua_libs.h"
#include <lua5.1/lauxlib.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MSGPACK_MAX_NESTING 16

/* ---------- packing ---------- */

/* A plain malloc'ed buffer: packing raises no Lua error while it is live
 * (stack room is checked with lua_checkstack, which does not raise). */
typedef struct { unsigned char *data; size_t len, cap; } packbuf;

static void pb_put(packbuf *b, const void *p, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n) cap *= 2;
        unsigned char *grown = realloc(b->data, cap);
        if (!grown) abort();
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void pb_byte(packbuf *b, unsigned char c) { pb_put(b, &c, 1); }

/* A type byte then `bytes` bytes of `v`, big-endian (MessagePack's order). */
static void pb_tagged(packbuf *b, unsigned char tag, uint64_t v, int bytes) {
    unsigned char tmp[9];
    tmp[0] = tag;
    for (int i = 0; i < bytes; i++) tmp[1 + i] = (unsigned char)(v >> (8 * (bytes - 1 - i)));
    pb_put(b, tmp, (size_t)bytes + 1);
}

static void pack_integer(packbuf *b, int64_t n) {
    if (n >= 0) {
        if (n < 128) pb_byte(b, (unsigned char)n);
        else if (n <= 0xff) pb_tagged(b, 0xcc, (uint64_t)n, 1);
        else if (n <= 0xffff) pb_tagged(b, 0xcd, (uint64_t)n, 2);
        else if (n <= 0xffffffffLL) pb_tagged(b, 0xce, (uint64_t)n, 4);
        else pb_tagged(b, 0xcf, (uint64_t)n, 8);
    } else {
        if (n >= -32) pb_byte(b, (unsigned char)(n & 0xff));
        else if (n >= -128) pb_tagged(b, 0xd0, (uint64_t)n, 1);
        else if (n >= -32768) pb_tagged(b, 0xd1, (uint64_t)n, 2);
        else if (n >= -2147483648LL) pb_tagged(b, 0xd2, (uint64_t)n, 4);
        else pb_tagged(b, 0xd3, (uint64_t)n, 8);
    }
}

static void pack_number(packbuf *b, lua_Number n) {
    /* Integer-valued numbers within int64 go out as integers (-0 as 0). */
    if (n >= -9223372036854775808.0 && n < 9223372036854775808.0 && (lua_Number)(int64_t)n == n) {
        pack_integer(b, (int64_t)n);
        return;
    }
    float f = (float)n;
    if ((double)f == (double)n) {
        uint32_t bits;
        memcpy(&bits, &f, 4);
        pb_tagged(b, 0xca, bits, 4);
    } else {
        uint64_t bits;
        double d = (double)n;
        memcpy(&bits, &d, 8);
        pb_tagged(b, 0xcb, bits, 8);
    }
}

static void pack_string(packbuf *b, const char *s, size_t len) {
    if (len < 32) pb_byte(b, (unsigned char)(0xa0 | len));
    else if (len <= 0xff) pb_tagged(b, 0xd9, len, 1);
    else if (len <= 0xffff) pb_tagged(b, 0xda, len, 2);
    else pb_tagged(b, 0xdb, len, 4);
    pb_put(b, s, len);
}

/* Keys exactly 1..n (none missing, nothing else): packed as an array. */
static int is_sequence(lua_State *L, int t) {
    lua_Number max = 0, count = 0;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        lua_Number k;
        if (lua_type(L, -1) != LUA_TNUMBER || (k = lua_tonumber(L, -1)) <= 0 || k != floor(k)) {
            lua_pop(L, 1);
            return 0;
        }
        if (k > max) max = k;
        count++;
    }
    return max == count;
}

static void pack_value(lua_State *L, packbuf *b, int index, int level);

static void pack_table(lua_State *L, packbuf *b, int t, int level) {
    if (is_sequence(L, t)) {
        size_t n = lua_objlen(L, t);
        if (n < 16) pb_byte(b, (unsigned char)(0x90 | n));
        else if (n <= 0xffff) pb_tagged(b, 0xdc, n, 2);
        else pb_tagged(b, 0xdd, n, 4);
        for (size_t i = 1; i <= n; i++) {
            lua_rawgeti(L, t, (int)i);
            pack_value(L, b, lua_gettop(L), level + 1);
            lua_pop(L, 1);
        }
        return;
    }
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, t)) { n++; lua_pop(L, 1); }
    if (n < 16) pb_byte(b, (unsigned char)(0x80 | n));
    else if (n <= 0xffff) pb_tagged(b, 0xde, n, 2);
    else pb_tagged(b, 0xdf, n, 4);
    lua_pushnil(L);
    while (lua_next(L, t)) {
        int top = lua_gettop(L);
        pack_value(L, b, top - 1, level + 1);
        pack_value(L, b, top, level + 1);
        lua_pop(L, 1);
    }
}

static void pack_value(lua_State *L, packbuf *b, int index, int level) {
    int type = lua_type(L, index);
    /* Too deep (or no stack room left): nil, as lua-cmsgpack does at its limit. */
    if (type == LUA_TTABLE && (level >= MSGPACK_MAX_NESTING || !lua_checkstack(L, 4))) type = LUA_TNIL;
    switch (type) {
    case LUA_TBOOLEAN: pb_byte(b, lua_toboolean(L, index) ? 0xc3 : 0xc2); break;
    case LUA_TNUMBER: pack_number(b, lua_tonumber(L, index)); break;
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, index, &len);
        pack_string(b, s, len);
        break;
    }
    case LUA_TTABLE: pack_table(L, b, index, level); break;
    default: pb_byte(b, 0xc0); break;
    }
}

/* cmsgpack.pack(v1, v2, ...): the encodings of every argument, concatenated. */
static int msgpack_pack(lua_State *L) {
    int argc = lua_gettop(L);
    if (argc == 0) return luaL_argerror(L, 0, "MessagePack pack needs input.");
    packbuf b = { 0 };
    for (int i = 1; i <= argc; i++) pack_value(L, &b, i, 0);
    lua_pushlstring(L, b.len ? (const char *)b.data : "", b.len);
    free(b.data);
    return 1;
}

/* ---------- unpacking ---------- */

typedef struct {
    const unsigned char *p;
    size_t left;
    int error; /* 0, UNPACK_EOF or UNPACK_BADFMT */
} cursor;

enum { UNPACK_EOF = 1, UNPACK_BADFMT = 2 };

static int cur_need(cursor *c, size_t n) {
    if (c->left < n) { c->error = UNPACK_EOF; return 0; }
    return 1;
}

static uint64_t cur_be(cursor *c, size_t offset, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v = (v << 8) | c->p[offset + (size_t)i];
    return v;
}

static void cur_skip(cursor *c, size_t n) { c->p += n; c->left -= n; }

static void unpack_value(lua_State *L, cursor *c);

static void unpack_array(lua_State *L, cursor *c, size_t n) {
    lua_newtable(L);
    for (size_t i = 1; i <= n; i++) {
        lua_pushnumber(L, (lua_Number)i);
        unpack_value(L, c);
        if (c->error) return;
        lua_settable(L, -3);
    }
}

static void unpack_map(lua_State *L, cursor *c, size_t n) {
    lua_newtable(L);
    while (n--) {
        unpack_value(L, c);
        if (c->error) return;
        unpack_value(L, c);
        if (c->error) return;
        lua_settable(L, -3);
    }
}

/* A length-prefixed string: `header` bytes of tag+length, then the bytes. */
static void unpack_string(lua_State *L, cursor *c, size_t header, size_t len) {
    if (!cur_need(c, header + len)) return;
    lua_pushlstring(L, (const char *)c->p + header, len);
    cur_skip(c, header + len);
}

static void unpack_value(lua_State *L, cursor *c) {
    if (!cur_need(c, 1)) return;
    if (!lua_checkstack(L, 3)) { c->error = UNPACK_BADFMT; return; }
    unsigned char tag = c->p[0];
    /* Fixed-size numbers: tag byte + payload. */
    int width = 0;
    switch (tag) {
    case 0xcc: case 0xd0: width = 1; break;
    case 0xcd: case 0xd1: width = 2; break;
    case 0xce: case 0xd2: case 0xca: width = 4; break;
    case 0xcf: case 0xd3: case 0xcb: width = 8; break;
    default: break;
    }
    if (width) {
        if (!cur_need(c, 1 + (size_t)width)) return;
        uint64_t v = cur_be(c, 1, width);
        lua_Number n;
        switch (tag) {
        case 0xcc: case 0xcd: case 0xce: case 0xcf: n = (lua_Number)v; break;
        case 0xd0: n = (lua_Number)(int8_t)v; break;
        case 0xd1: n = (lua_Number)(int16_t)v; break;
        case 0xd2: n = (lua_Number)(int32_t)v; break;
        case 0xd3: n = (lua_Number)(int64_t)v; break;
        case 0xca: { uint32_t bits = (uint32_t)v; float f; memcpy(&f, &bits, 4); n = (lua_Number)f; break; }
        default: { double d; memcpy(&d, &v, 8); n = (lua_Number)d; break; }
        }
        lua_pushnumber(L, n);
        cur_skip(c, 1 + (size_t)width);
        return;
    }
    switch (tag) {
    case 0xc0: lua_pushnil(L); cur_skip(c, 1); return;
    case 0xc2: lua_pushboolean(L, 0); cur_skip(c, 1); return;
    case 0xc3: lua_pushboolean(L, 1); cur_skip(c, 1); return;
    case 0xd9: if (cur_need(c, 2)) unpack_string(L, c, 2, (size_t)cur_be(c, 1, 1)); return;
    case 0xda: if (cur_need(c, 3)) unpack_string(L, c, 3, (size_t)cur_be(c, 1, 2)); return;
    case 0xdb: if (cur_need(c, 5)) unpack_string(L, c, 5, (size_t)cur_be(c, 1, 4)); return;
    case 0xdc: if (cur_need(c, 3)) { size_t n = (size_t)cur_be(c, 1, 2); cur_skip(c, 3); unpack_array(L, c, n); } return;
    case 0xdd: if (cur_need(c, 5)) { size_t n = (size_t)cur_be(c, 1, 4); cur_skip(c, 5); unpack_array(L, c, n); } return;
    case 0xde: if (cur_need(c, 3)) { size_t n = (size_t)cur_be(c, 1, 2); cur_skip(c, 3); unpack_map(L, c, n); } return;
    case 0xdf: if (cur_need(c, 5)) { size_t n = (size_t)cur_be(c, 1, 4); cur_skip(c, 5); unpack_map(L, c, n); } return;
    default: break;
    }
    if (tag < 0x80) { lua_pushnumber(L, tag); cur_skip(c, 1); }
    else if (tag >= 0xe0) { lua_pushnumber(L, (signed char)tag); cur_skip(c, 1); }
    else if ((tag & 0xe0) == 0xa0) unpack_string(L, c, 1, tag & 0x1f);
    else if ((tag & 0xf0) == 0x90) { cur_skip(c, 1); unpack_array(L, c, tag & 0x0f); }
    else if ((tag & 0xf0) == 0x80) { cur_skip(c, 1); unpack_map(L, c, tag & 0x0f); }
    else c->error = UNPACK_BADFMT; /* bin, ext and reserved tags are not understood */
}

/* Decodes up to `limit` values from `offset` of argument 1. With neither a
 * limit nor an offset it returns every value; otherwise the next offset
 * (-1 once the input is used up) comes first, then the values. */
static int unpack_from(lua_State *L, int limit, int offset) {
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    int everything = limit == 0 && offset == 0;
    if (offset < 0 || limit < 0)
        return luaL_error(L, "Invalid request to unpack with offset of %d and limit of %d.", offset, (int)len);
    if ((size_t)offset > len)
        return luaL_error(L, "Start offset %d greater than input length %d.", offset, (int)len);
    if (everything) limit = INT_MAX;
    cursor c = { (const unsigned char *)s + offset, len - (size_t)offset, 0 };
    int count = 0;
    while (c.left > 0 && count < limit) {
        unpack_value(L, &c);
        if (c.error == UNPACK_EOF) return luaL_error(L, "Missing bytes in input.");
        if (c.error == UNPACK_BADFMT) return luaL_error(L, "Bad data format in input.");
        count++;
    }
    if (everything) return count;
    if (!lua_checkstack(L, 1)) return luaL_error(L, "Too many items in MessagePack data");
    lua_pushinteger(L, c.left == 0 ? -1 : (lua_Integer)(len - c.left));
    lua_insert(L, 2);
    return count + 1;
}

static int msgpack_unpack(lua_State *L) { return unpack_from(L, 0, 0); }

static int msgpack_unpack_one(lua_State *L) {
    int offset = (int)luaL_optinteger(L, 2, 0);
    lua_settop(L, 1);
    return unpack_from(L, 1, offset);
}

static int msgpack_unpack_limit(lua_State *L) {
    int limit = (int)luaL_checkinteger(L, 2);
    int offset = (int)luaL_optinteger(L, 3, 0);
    lua_settop(L, 1);
    return unpack_from(L, limit, offset);
}

void dfly_open_cmsgpack(lua_State *L) {
    lua_newtable(L);
    lua_pushcfunction(L, msgpack_pack); lua_setfield(L, -2, "pack");
    lua_pushcfunction(L, msgpack_unpack); lua_setfield(L, -2, "unpack");
    lua_pushcfunction(L, msgpack_unpack_one); lua_setfield(L, -2, "unpack_one");
    lua_pushcfunction(L, msgpack_unpack_limit); lua_setfield(L, -2, "unpack_limit");
    lua_pushstring(L, "cmsgpack"); lua_setfield(L, -2, "_NAME");
    lua_pushstring(L, "lua-cmsgpack 0.4.0"); lua_setfield(L, -2, "_VERSION");
    lua_pushstring(L, "Copyright (C) 2012, Salvatore Sanfilippo"); lua_setfield(L, -2, "_COPYRIGHT");
    lua_pushstring(L, "MessagePack C implementation for Lua"); lua_setfield(L, -2, "_DESCRIPTION");
    lua_setglobal(L, "cmsgpack");
}
