/*
 * settings_tls.c — gunicorn's TLS settings as cunicorn reads them:
 * ssl_version's spellings (the ssl module's PROTOCOL_* names and
 * numbers) and the checks of the TLS settings together at finalize.
 * The files they name are read by the master (tls.c), never here.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy_proto.h"
#include "settings.h"
#include "settings_int.h"

/*
 * ssl_version as gunicorn 20's validator takes it: one of the ssl
 * module's PROTOCOL_* names (the prefix optional here) or its number.
 * Every "negotiate" spelling is TLS 1.2 and newer; TLSv1_2 pins 1.2;
 * the obsolete protocols and the client-side one are refused.
 */
int
settings_ssl_version_parse(const char *text, const char **why)
{
	static const struct { const char *name; int number; } protocols[] = {
		{ "SSLv2", 0 }, { "SSLv3", 1 }, { "SSLv23", 2 }, { "TLS", 2 },
		{ "TLSv1", 3 }, { "TLSv1_1", 4 }, { "TLSv1_2", 5 },
		{ "TLS_CLIENT", 16 }, { "TLS_SERVER", 17 },
	};
	const char *name = text;
	long long n = -1;

	if (strncasecmp(name, "PROTOCOL_", 9) == 0)
		name += 9;
	for (size_t i = 0; i < sizeof(protocols) / sizeof(protocols[0]); i++)
		if (strcasecmp(name, protocols[i].name) == 0)
			n = protocols[i].number;
	if (n == -1 && (settings_parse_int(text, &n) == -1 || n < 0))
		n = -1;
	switch (n) {
	case SETTINGS_SSL_TLS:
	case SETTINGS_SSL_TLSv1_2:
	case SETTINGS_SSL_TLS_SERVER:
		return (int)n;
	case 0: case 1: case 3: case 4:
		*why = "obsolete and insecure; cunicorn serves TLS 1.2 and "
		    "newer (TLS, TLS_SERVER) or TLS 1.2 only (TLSv1_2)";
		return -1;
	case 16:
		*why = "a client-side protocol; use TLS or TLS_SERVER";
		return -1;
	default:
		*why = "expected TLS, TLS_SERVER, SSLv23, TLSv1_2 or the ssl "
		    "module's number for one of them";
		return -1;
	}
}

/* "" is None for the TLS file names (gunicorn's --certfile= unsets). */
static void
empty_is_none(char **v)
{
	if (*v != NULL && **v == '\0') {
		free(*v);
		*v = NULL;
	}
}

/*
 * The TLS settings together (the files themselves are read by the
 * master, tls.c).  TLS is on when certfile is set; keyfile may be
 * omitted (the key is then in certfile, as Python's load_cert_chain
 * takes it) but keyfile alone is an error, not a silent plain-HTTP
 * start.  A PROXY preamble or uWSGI packets come before any TLS bytes
 * on the wire, so neither mixes with certfile.
 */
int
settings_tls_check(struct settings *s)
{
	empty_is_none(&s->certfile);
	empty_is_none(&s->keyfile);
	empty_is_none(&s->ca_certs);
	empty_is_none(&s->ciphers);
	if (s->certfile == NULL && s->keyfile != NULL) {
		settings_error("keyfile: set without certfile (TLS needs "
		    "certfile; the key may be in it or in keyfile)");
		return -1;
	}
	if (s->certfile == NULL)
		return 0;
	if (proxy_mode_parse(s->proxy_protocol) != PROXY_MODE_OFF) {
		settings_error("certfile: TLS with proxy_protocol is not "
		    "supported by cunicorn (the PROXY preamble would precede "
		    "the TLS handshake); terminate TLS in the proxy or turn "
		    "proxy_protocol off");
		return -1;
	}
	if (strcmp(s->protocol, "uwsgi") == 0) {
		settings_error("certfile: TLS with protocol uwsgi is not "
		    "supported by cunicorn (uwsgi_pass speaks plain uWSGI); "
		    "use protocol http with certfile");
		return -1;
	}
	return 0;
}
