/*
 * Gives wrk a TLS client certificate, which it has no option for, so that the benchmark can load a
 * kube-audit-rest started with --client-ca-file. Loaded with LD_PRELOAD, it wraps OpenSSL's
 * SSL_CTX_new (wrk makes one context at start) and loads the certificate chain and key named by
 * KAR_CLIENT_CERT and KAR_CLIENT_KEY into it. Built by testing/bench/ab.ts into .cache/wrk-client-cert/.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>

SSL_CTX *SSL_CTX_new(const SSL_METHOD *method) {
  static SSL_CTX *(*real)(const SSL_METHOD *);
  if (real == NULL) real = (SSL_CTX * (*)(const SSL_METHOD *)) dlsym(RTLD_NEXT, "SSL_CTX_new");
  SSL_CTX *ctx = real(method);
  const char *cert = getenv("KAR_CLIENT_CERT");
  const char *key = getenv("KAR_CLIENT_KEY");
  if (ctx != NULL && cert != NULL && key != NULL) {
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
      fprintf(stderr, "wrk-client-cert: cannot load %s and %s\n", cert, key);
      abort();
    }
  }
  return ctx;
}
