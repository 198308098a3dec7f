/* struct for scripts: the binary packing library Redis exposes as the global
 * `struct` (Roberto Ierusalimschy's struct 0.2 format language, with Redis's
 * limits), written here from its documented behaviour because Debian ships
 * no Lua 5.1 package for it.
 *
 * Format: '>' big-endian, '<' little-endian, '!n' maximum alignment (n a
 * power of 2; '!' alone means the platform's), ' ' ignored; 'b'/'B' char,
 * 'h'/'H' short, 'l'/'L' long, 'T' size_t, 'i'/'I'[n] an n-byte integer
 * (default sizeof(int), at most 32), 'f' float, 'd' double, 'x' a pad byte,
 * 'c'[n] n bytes (c0: the whole string when packing, a length read just
 * before when unpacking), 's' a zero-terminated string. Lower case is signed.
 * Every integer goes through a 64-bit long, as in Redis. Alignment starts at
 * 1 (no padding) until '!' says otherwise. */
#include "lua_libs.h"
#include <lua5.1/lauxlib.h>
#include <ctype.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define STRUCT_MAX_INT_SIZE 32

/* The platform's strictest alignment, as '!' with no number means. */
struct struct_align_probe { char c; double d; };
#define STRUCT_PLATFORM_ALIGN \
    (offsetof(struct struct_align_probe, d) > sizeof(int) ? offsetof(struct struct_align_probe, d) : sizeof(int))

typedef struct {
    int little; /* byte order */
    size_t align; /* maximum alignment */
} layout;

static int host_is_little(void) {
    const uint16_t one = 1;
    return *(const unsigned char *)&one == 1;
}

/* Reads an optional decimal count after an option letter. */
static int read_count(lua_State *L, const char **fmt, int fallback) {
    if (!isdigit((unsigned char)**fmt)) return fallback;
    int n = 0;
    while (isdigit((unsigned char)**fmt)) {
        int digit = **fmt - '0';
        if (n > (INT_MAX - digit) / 10) luaL_error(L, "integral size overflow");
        n = n * 10 + digit;
        (*fmt)++;
    }
    return n;
}

/* The byte size an option occupies (0 for options that are not data, and
 * for 's'), consuming its count. */
static size_t option_size(lua_State *L, char opt, const char **fmt) {
    switch (opt) {
    case 'b': case 'B': return sizeof(char);
    case 'h': case 'H': return sizeof(short);
    case 'l': case 'L': return sizeof(long);
    case 'T': return sizeof(size_t);
    case 'f': return sizeof(float);
    case 'd': return sizeof(double);
    case 'x': return 1;
    case 'c': return (size_t)read_count(L, fmt, 1);
    case 'i': case 'I': {
        int n = read_count(L, fmt, sizeof(int));
        if (n > STRUCT_MAX_INT_SIZE)
            luaL_error(L, "integral size %d is larger than limit of %d", n, STRUCT_MAX_INT_SIZE);
        return (size_t)n;
    }
    default: return 0;
    }
}

/* Padding before an item of `size` bytes at offset `at`. */
static size_t padding(size_t at, const layout *lay, char opt, size_t size) {
    if (size == 0 || opt == 'c') return 0;
    size_t a = size < lay->align ? size : lay->align;
    return (a - (at & (a - 1))) & (a - 1);
}

/* Options that change the layout rather than carry data. */
static void layout_option(lua_State *L, char opt, const char **fmt, layout *lay) {
    switch (opt) {
    case ' ': return;
    case '>': lay->little = 0; return;
    case '<': lay->little = 1; return;
    case '!': {
        int a = read_count(L, fmt, (int)STRUCT_PLATFORM_ALIGN);
        if (a <= 0 || (a & (a - 1)) != 0) luaL_error(L, "alignment %d is not a power of 2", a);
        lay->align = (size_t)a;
        return;
    }
    default:
        luaL_argerror(L, 1, lua_pushfstring(L, "invalid format option '%c'", opt));
    }
}

static void layout_init(layout *lay) {
    lay->little = host_is_little();
    lay->align = 1;
}

/* Copies `n` bytes of a native value in the layout's byte order. */
static void ordered_copy(unsigned char *to, const unsigned char *from, size_t n, int little) {
    if (little == host_is_little()) memcpy(to, from, n);
    else for (size_t i = 0; i < n; i++) to[i] = from[n - 1 - i];
}

static void add_integer(lua_State *L, luaL_Buffer *b, int arg, const layout *lay, size_t size) {
    lua_Number n = luaL_checknumber(L, arg);
    /* Negative numbers through long (two's complement), others through unsigned long. */
    unsigned long v = n < 0 ? (unsigned long)(long)n : (unsigned long)n;
    unsigned char bytes[STRUCT_MAX_INT_SIZE];
    for (size_t i = 0; i < size; i++) {
        /* Past 8 bytes the value is used up: zero bytes, not sign bytes. */
        bytes[lay->little ? i : size - 1 - i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
    luaL_addlstring(b, (const char *)bytes, size);
}

static int struct_pack(lua_State *L) {
    const char *fmt = luaL_checkstring(L, 1);
    layout lay;
    layout_init(&lay);
    int arg = 2;
    size_t offset = 0;
    luaL_Buffer b;
    lua_pushnil(L); /* keeps the arguments apart from the buffer's pieces */
    luaL_buffinit(L, &b);
    while (*fmt) {
        char opt = *fmt++;
        size_t size = option_size(L, opt, &fmt);
        size_t pad = padding(offset, &lay, opt, size);
        offset += pad;
        while (pad--) luaL_addchar(&b, '\0');
        switch (opt) {
        case 'b': case 'B': case 'h': case 'H': case 'l': case 'L': case 'T': case 'i': case 'I':
            add_integer(L, &b, arg++, &lay, size);
            break;
        case 'x':
            luaL_addchar(&b, '\0');
            break;
        case 'f': {
            float f = (float)luaL_checknumber(L, arg++);
            unsigned char bytes[sizeof f];
            ordered_copy(bytes, (const unsigned char *)&f, sizeof f, lay.little);
            luaL_addlstring(&b, (const char *)bytes, sizeof f);
            break;
        }
        case 'd': {
            double d = (double)luaL_checknumber(L, arg++);
            unsigned char bytes[sizeof d];
            ordered_copy(bytes, (const unsigned char *)&d, sizeof d, lay.little);
            luaL_addlstring(&b, (const char *)bytes, sizeof d);
            break;
        }
        case 'c': case 's': {
            size_t len;
            const char *s = luaL_checklstring(L, arg++, &len);
            if (size == 0) size = len;
            /* Redis reports the argument after the string here. */
            luaL_argcheck(L, len >= size, arg, "string too short");
            luaL_addlstring(&b, s, size);
            if (opt == 's') {
                luaL_addchar(&b, '\0');
                size++;
            }
            break;
        }
        default:
            layout_option(L, opt, &fmt, &lay);
        }
        offset += size;
    }
    luaL_pushresult(&b);
    return 1;
}

static lua_Number read_integer(const unsigned char *p, const layout *lay, int is_signed, size_t size) {
    unsigned long v = 0;
    for (size_t i = 0; i < size; i++) {
        unsigned char byte = lay->little ? p[size - 1 - i] : p[i];
        v = (v << 8) | byte;
    }
    if (!is_signed) return (lua_Number)v;
    /* Sign-extend from the item's top bit (only meaningful up to 8 bytes). */
    size_t bits = size * 8;
    if (bits >= 1 && bits <= sizeof(v) * 8) {
        unsigned long sign = 1UL << (bits - 1);
        if (v & sign) v |= ~(sign - 1) | sign;
    }
    return (lua_Number)(long)v;
}

static int struct_unpack(lua_State *L) {
    const char *fmt = luaL_checkstring(L, 1);
    size_t length;
    const unsigned char *data = (const unsigned char *)luaL_checklstring(L, 2, &length);
    lua_Integer start = luaL_optinteger(L, 3, 1);
    luaL_argcheck(L, start > 0, 3, "offset must be 1 or greater");
    size_t pos = (size_t)start - 1;
    layout lay;
    layout_init(&lay);
    int results = 0;
    while (*fmt) {
        char opt = *fmt++;
        size_t size = option_size(L, opt, &fmt);
        pos += padding(pos, &lay, opt, size);
        luaL_argcheck(L, size <= length && pos <= length - size, 2, "data string too short");
        luaL_checkstack(L, 2, "too many results");
        switch (opt) {
        case 'b': case 'B': case 'h': case 'H': case 'l': case 'L': case 'T': case 'i': case 'I':
            lua_pushnumber(L, read_integer(data + pos, &lay, islower((unsigned char)opt), size));
            results++;
            break;
        case 'x':
            break;
        case 'f': {
            float f;
            unsigned char bytes[sizeof f];
            ordered_copy(bytes, data + pos, sizeof f, lay.little);
            memcpy(&f, bytes, sizeof f);
            lua_pushnumber(L, f);
            results++;
            break;
        }
        case 'd': {
            double d;
            unsigned char bytes[sizeof d];
            ordered_copy(bytes, data + pos, sizeof d, lay.little);
            memcpy(&d, bytes, sizeof d);
            lua_pushnumber(L, d);
            results++;
            break;
        }
        case 'c':
            if (size == 0) {
                /* c0: the length is the number unpacked just before. */
                if (results == 0 || !lua_isnumber(L, -1)) luaL_error(L, "format 'c0' needs a previous size");
                size = (size_t)lua_tonumber(L, -1);
                lua_pop(L, 1);
                results--;
                luaL_argcheck(L, size <= length && pos <= length - size, 2, "data string too short");
            }
            lua_pushlstring(L, (const char *)data + pos, size);
            results++;
            break;
        case 's': {
            const unsigned char *end = memchr(data + pos, '\0', length - pos);
            if (!end) luaL_error(L, "unfinished string in data");
            size = (size_t)(end - (data + pos)) + 1;
            lua_pushlstring(L, (const char *)data + pos, size - 1);
            results++;
            break;
        }
        default:
            layout_option(L, opt, &fmt, &lay);
        }
        pos += size;
    }
    lua_pushinteger(L, (lua_Integer)pos + 1);
    return results + 1;
}

static int struct_size(lua_State *L) {
    const char *fmt = luaL_checkstring(L, 1);
    layout lay;
    layout_init(&lay);
    size_t pos = 0;
    while (*fmt) {
        char opt = *fmt++;
        size_t size = option_size(L, opt, &fmt);
        pos += padding(pos, &lay, opt, size);
        if (opt == 's') luaL_argerror(L, 1, "option 's' has no fixed size");
        else if (opt == 'c' && size == 0) luaL_argerror(L, 1, "option 'c0' has no fixed size");
        if (!isalnum((unsigned char)opt)) layout_option(L, opt, &fmt, &lay);
        pos += size;
    }
    lua_pushinteger(L, (lua_Integer)pos);
    return 1;
}

void dfly_open_struct(lua_State *L) {
    lua_newtable(L);
    lua_pushcfunction(L, struct_pack); lua_setfield(L, -2, "pack");
    lua_pushcfunction(L, struct_unpack); lua_setfield(L, -2, "unpack");
    lua_pushcfunction(L, struct_size); lua_setfield(L, -2, "size");
    lua_setglobal(L, "struct");
}
