#include "CZlib.h"
#include <zlib.h>

size_t dfly_zlib_bound(size_t length) { return (size_t)compressBound((uLong)length); }

long dfly_zlib_deflate(const void *data, size_t length, void *out, size_t capacity) {
    uLongf outLength = (uLongf)capacity;
    /* compress2 = deflateInit (15-bit window, memLevel 8, default strategy), as Ruby's
       Zlib::Deflate.deflate with its default level. */
    if (compress2((Bytef *)out, &outLength, (const Bytef *)data, (uLong)length, Z_DEFAULT_COMPRESSION) != Z_OK) return -1;
    return (long)outLength;
}

long dfly_zlib_inflate(const void *data, size_t length, void *out, size_t capacity) {
    uLongf outLength = (uLongf)capacity;
    if (uncompress((Bytef *)out, &outLength, (const Bytef *)data, (uLong)length) != Z_OK) return -1;
    return (long)outLength;
}
