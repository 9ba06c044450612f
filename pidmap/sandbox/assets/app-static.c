/* The one program of the sandbox's shell-less image (gcr.io/distroless/static): says it is up,
 * then waits for SIGTERM, as a statically linked server with nothing else in its image would. */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

static void on_term(int sig) { (void)sig; _exit(0); }

int main(void) {
  signal(SIGTERM, on_term);
  signal(SIGINT, on_term);
  printf("static app: serving (no shell in this image)\n");
  fflush(stdout);
  for (;;) pause();
  return 0;
}
