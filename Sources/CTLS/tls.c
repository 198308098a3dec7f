#include "CTLS.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dfly_tls_ctx {
    SSL_CTX *ctx;
};

struct dfly_tls {
    SSL *ssl;
    BIO *in;   /* ciphertext from the peer, read by OpenSSL */
    BIO *out;  /* ciphertext OpenSSL wrote, for the peer */
    int failed;
};

static void copy_error(char *buf, size_t cap, const char *prefix) {
    unsigned long code = ERR_get_error();
    char reason[200] = "unknown error";
    if (code) ERR_error_string_n(code, reason, sizeof reason);
    snprintf(buf, cap, "%s%s", prefix, reason);
    ERR_clear_error();
}

/* The context behind our handle, or NULL (the context freed) when out of memory. */
static dfly_tls_ctx *wrap(SSL_CTX *ctx) {
    dfly_tls_ctx *out = malloc(sizeof *out);
    if (!out) { SSL_CTX_free(ctx); return NULL; }
    out->ctx = ctx;
    return out;
}

/* "TLSv1.2 TLSv1.3" -> the lowest and highest versions named. */
static int protocol_range(const char *protocols, int *min, int *max) {
    static const struct { const char *name; int version; } known[] = {
        {"TLSv1", TLS1_VERSION}, {"TLSv1.1", TLS1_1_VERSION}, {"TLSv1.2", TLS1_2_VERSION}, {"TLSv1.3", TLS1_3_VERSION},
    };
    *min = 0; *max = 0;
    char copy[128];
    snprintf(copy, sizeof copy, "%s", protocols);
    char *save = NULL;
    for (char *word = strtok_r(copy, " ", &save); word; word = strtok_r(NULL, " ", &save)) {
        int version = 0;
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
            if (strcasecmp(word, known[i].name) == 0) version = known[i].version;
        }
        if (!version) return -1;
        if (!*min || version < *min) *min = version;
        if (version > *max) *max = version;
    }
    return *min ? 0 : -1;
}

dfly_tls_ctx *dfly_tls_ctx_new(const char *cert_file, const char *key_file, const char *key_pass,
                               const char *ca_file, const char *ca_dir, int auth_clients,
                               const char *protocols, const char *ciphers, const char *ciphersuites,
                               int prefer_server, char *error, size_t error_len) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) { copy_error(error, error_len, "cannot create the TLS context: "); return NULL; }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION);
    if (prefer_server) SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* OpenSSL copies nothing: the password must outlive the key's loading only. */
    if (key_pass && *key_pass) SSL_CTX_set_default_passwd_cb_userdata(ctx, (void *)key_pass);
    /* Redis's defaults: no session cache across the server (tickets only). */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    if (protocols && *protocols) {
        int min, max;
        if (protocol_range(protocols, &min, &max) != 0) {
            snprintf(error, error_len, "invalid tls-protocols: %s", protocols);
            goto fail;
        }
        SSL_CTX_set_min_proto_version(ctx, min);
        SSL_CTX_set_max_proto_version(ctx, max);
    }
    if (!cert_file || !*cert_file || !key_file || !*key_file) {
        snprintf(error, error_len, "TLS needs a certificate and a key (tls_cert_file, tls_key_file)");
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) <= 0) {
        char prefix[300];
        snprintf(prefix, sizeof prefix, "cannot load certificate %s: ", cert_file);
        copy_error(error, error_len, prefix);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) <= 0) {
        char prefix[300];
        snprintf(prefix, sizeof prefix, "cannot load private key %s: ", key_file);
        copy_error(error, error_len, prefix);
        goto fail;
    }
    if (!SSL_CTX_check_private_key(ctx)) {
        copy_error(error, error_len, "the private key does not match the certificate: ");
        goto fail;
    }
    if ((ca_file && *ca_file) || (ca_dir && *ca_dir)) {
        if (SSL_CTX_load_verify_locations(ctx, (ca_file && *ca_file) ? ca_file : NULL,
                                          (ca_dir && *ca_dir) ? ca_dir : NULL) <= 0) {
            copy_error(error, error_len, "cannot load the CA certificates: ");
            goto fail;
        }
    } else if (auth_clients) {
        snprintf(error, error_len, "tls_auth_clients needs tls_ca_cert_file or tls_ca_cert_dir to verify client certificates");
        goto fail;
    }
    if (ciphers && *ciphers && !SSL_CTX_set_cipher_list(ctx, ciphers)) {
        snprintf(error, error_len, "invalid tls-ciphers: %s", ciphers);
        goto fail;
    }
    if (ciphersuites && *ciphersuites && !SSL_CTX_set_ciphersuites(ctx, ciphersuites)) {
        snprintf(error, error_len, "invalid tls-ciphersuites: %s", ciphersuites);
        goto fail;
    }
    switch (auth_clients) {
    case 1: SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL); break;
    case 2: SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL); break;
    default: SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL); break;
    }
    return wrap(ctx);
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

dfly_tls_ctx *dfly_tls_client_ctx_new(const char *ca_file, const char *ca_dir, const char *cert_file,
                                      const char *key_file, int verify, char *error, size_t error_len) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) { copy_error(error, error_len, "cannot create the TLS context: "); return NULL; }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if ((ca_file && *ca_file) || (ca_dir && *ca_dir)) {
        if (SSL_CTX_load_verify_locations(ctx, (ca_file && *ca_file) ? ca_file : NULL,
                                          (ca_dir && *ca_dir) ? ca_dir : NULL) <= 0) {
            copy_error(error, error_len, "cannot load the CA certificates: ");
            goto fail;
        }
    } else if (verify && SSL_CTX_set_default_verify_paths(ctx) <= 0) {
        copy_error(error, error_len, "cannot load the system's CA certificates: ");
        goto fail;
    }
    if ((cert_file && *cert_file) != (key_file && *key_file)) {
        snprintf(error, error_len, "a client certificate needs both its certificate and its key");
        goto fail;
    }
    if (cert_file && *cert_file) {
        if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) <= 0 ||
            SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) <= 0 || !SSL_CTX_check_private_key(ctx)) {
            copy_error(error, error_len, "cannot load the client certificate: ");
            goto fail;
        }
    }
    SSL_CTX_set_verify(ctx, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    return wrap(ctx);
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

void dfly_tls_ctx_free(dfly_tls_ctx *ctx) {
    if (!ctx) return;
    SSL_CTX_free(ctx->ctx);
    free(ctx);
}

dfly_tls *dfly_tls_new(dfly_tls_ctx *ctx) {
    dfly_tls *tls = calloc(1, sizeof *tls);
    if (!tls) return NULL;
    tls->ssl = SSL_new(ctx->ctx);
    tls->in = BIO_new(BIO_s_mem());
    tls->out = BIO_new(BIO_s_mem());
    if (!tls->ssl || !tls->in || !tls->out) {
        if (tls->ssl) SSL_free(tls->ssl);
        else { BIO_free(tls->in); BIO_free(tls->out); }
        free(tls);
        return NULL;
    }
    /* An empty memory BIO reads as "retry", not end of file. */
    BIO_set_mem_eof_return(tls->in, -1);
    BIO_set_mem_eof_return(tls->out, -1);
    SSL_set_bio(tls->ssl, tls->in, tls->out);
    SSL_set_accept_state(tls->ssl);
    return tls;
}

dfly_tls *dfly_tls_new_client(dfly_tls_ctx *ctx, const char *host) {
    dfly_tls *tls = dfly_tls_new(ctx);
    if (!tls) return NULL;
    SSL_set_connect_state(tls->ssl);
    if (host && *host) {
        unsigned char addr[16];
        int is_ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
        if (is_ip) {
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(tls->ssl), host);
        } else {
            SSL_set_tlsext_host_name(tls->ssl, host);
            SSL_set1_host(tls->ssl, host);
        }
    }
    return tls;
}

void dfly_tls_free(dfly_tls *tls) {
    if (!tls) return;
    SSL_free(tls->ssl); /* frees both BIOs */
    free(tls);
}

int dfly_tls_feed(dfly_tls *tls, const void *data, size_t len) {
    if (tls->failed) return -1;
    size_t done = 0;
    while (done < len) {
        int n = BIO_write(tls->in, (const char *)data + done, (int)(len - done > 1 << 30 ? 1 << 30 : len - done));
        if (n <= 0) { tls->failed = 1; return -1; }
        done += (size_t)n;
    }
    return 0;
}

/* WANT_READ / WANT_WRITE: 0 (more ciphertext needed); anything else ends the
   session (-1): a bad handshake, an unverifiable client certificate, an alert,
   the peer's close_notify. */
static int fail_with(dfly_tls *tls, int result) {
    int code = SSL_get_error(tls->ssl, result);
    ERR_clear_error();
    if (code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE) return 0;
    tls->failed = 1;
    return -1;
}

int dfly_tls_read(dfly_tls *tls, void *buf, size_t cap) {
    if (tls->failed) return -1;
    ERR_clear_error();
    int n = SSL_read(tls->ssl, buf, (int)(cap > 1 << 30 ? 1 << 30 : cap));
    if (n > 0) return n;
    return fail_with(tls, n);
}

int dfly_tls_write(dfly_tls *tls, const void *data, size_t len) {
    if (tls->failed) return -1;
    if (len == 0) return 0;
    ERR_clear_error();
    int n = SSL_write(tls->ssl, data, (int)(len > 1 << 30 ? 1 << 30 : len));
    if (n > 0) return n;
    return fail_with(tls, n);
}

size_t dfly_tls_readable(dfly_tls *tls) {
    return BIO_ctrl_pending(tls->in) + (size_t)SSL_pending(tls->ssl);
}

size_t dfly_tls_pending(dfly_tls *tls) {
    return BIO_ctrl_pending(tls->out);
}

size_t dfly_tls_take(dfly_tls *tls, void *buf, size_t cap) {
    int n = BIO_read(tls->out, buf, (int)(cap > 1 << 30 ? 1 << 30 : cap));
    return n > 0 ? (size_t)n : 0;
}

int dfly_tls_established(dfly_tls *tls) { return SSL_is_init_finished(tls->ssl); }
const char *dfly_tls_version(dfly_tls *tls) { return SSL_get_version(tls->ssl); }
const char *dfly_tls_cipher(dfly_tls *tls) { return SSL_get_cipher_name(tls->ssl); }
