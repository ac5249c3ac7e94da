/*
 * main.c — cunicorn's entry: settings from the command line,
 * GUNICORN_CMD_ARGS and the config file (in gunicorn's precedence), the
 * interpreter, then the master.  Fails before anything is started, with
 * one line, on a bad option, value, config file or app.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "listen.h"
#include "log.h"
#include "master.h"
#include "proctitle.h"
#include "python.h"
#include "settings.h"

/*
 * Before anything is written or opened.  SIGPIPE is ignored, as the
 * Python interpreter does at start (gunicorn's behaviour): a log sink
 * whose reader went away -- `docker exec C sh -c "gunicorn ... &"`
 * closes the exec session's pipe as soon as sh exits -- must cost a
 * failed write, never the server.  Every child keeps it ignored
 * (signals_reset_child*).  A closed 0, 1 or 2 is opened on /dev/null,
 * so that the first file or socket we open never takes its number and
 * receives log lines or the access log.
 */
static void
process_hygiene(void)
{
	struct sigaction sa = { .sa_handler = SIG_IGN };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGPIPE, &sa, NULL);
	for (int fd = STDIN_FILENO; fd <= STDERR_FILENO; fd++) {
		if (fcntl(fd, F_GETFD) != -1 || errno != EBADF)
			continue;
		int null = open("/dev/null", fd == STDIN_FILENO ? O_RDONLY : O_WRONLY);
		if (null != -1 && null != fd) {	/* lower ones are open by now */
			dup2(null, fd);
			close(null);
		}
	}
}

int
main(int argc, char **argv)
{
	struct settings s;
	const char *env, *config;
	char *start_cwd = NULL;
	int rc;

	process_hygiene();
	/* $GUNICORN_FD is judged before anything can open a descriptor
	 * that takes a number it lists */
	if (listeners_check_inherited() == -1)
		return 1;
	proctitle_init(argc, argv);
	settings_defaults(&s);
	if (settings_parse_args(&s, argc, argv) == -1)
		return 2;
	env = getenv("GUNICORN_CMD_ARGS");
	if (env != NULL && settings_parse_env(&s, env) == -1)
		return 2;
	log_set_level(s.loglevel);

	python_init(argc, argv, s.virtualenv);
	config = s.config != NULL ? s.config : settings_default_config_path();
	rc = config != NULL ? settings_load_file(&s, config) : settings_apply_overrides(&s);
	if (rc == -1 || settings_finalize(&s) == -1)
		return 1;
	if (s.config != NULL) {
		/* absolute, so that SIGHUP re-reads the same file after --chdir */
		char *abs = realpath(s.config, NULL);
		if (abs != NULL) {
			free(s.config);
			s.config = abs;
		}
	}
	if (s.print_config) {
		settings_print(&s, stdout);
		return 0;
	}
	if (log_open(s.errorlog, s.accesslog, s.loglevel) == -1) {
		fprintf(stderr, "Error: cannot open log file: %s\n", strerror(errno));
		return 1;
	}
	start_cwd = getcwd(NULL, 0);
	if (s.chdir != NULL && chdir(s.chdir) == -1) {
		fprintf(stderr, "Error: chdir %s: %s\n", s.chdir, strerror(errno));
		return 1;
	}
	if (s.default_proc_name == NULL && s.app_uri != NULL)
		s.default_proc_name = xstrdup(s.app_uri);
	python_setup_paths(&s);
	/* the settings are parsed; the TLS layer that serves them is the
	 * next commit: until then a start with certfile must not serve
	 * plain HTTP (the asgi worker's TLS is the loop's: it serves it) */
	if (s.certfile != NULL && strcmp(s.worker_class, "asgi") != 0) {
		fprintf(stderr, "Error: certfile: TLS is not served by this "
		    "build yet\n");
		return 1;
	}
	if (s.check_config) {
		void *app = python_load_app(s.app_uri);
		return app != NULL ? 0 : 1;
	}
	{
		char why[256];
		if (master_syslog(&s, why, sizeof(why)) == -1) {
			fprintf(stderr, "Error: syslog_addr %s: %s\n",
			    s.syslog_addr, why);
			return 1;
		}
	}
	rc = master_main(&s, argc, argv, start_cwd);
	free(start_cwd);
	log_close();
	return rc;
}
