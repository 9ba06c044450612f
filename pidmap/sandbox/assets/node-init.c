/* PID 1 of a sandbox node container, in the role systemd plays in a kind node: starts containerd
 * (again, a second after it exits, as systemd's Restart=always would) and reaps every orphan
 * re-parented to it (the containerd shims daemonize and end up here). Exits 0 on SIGTERM/SIGINT so
 * that `docker stop` is quick. Built static when the node image is made. */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stop = 0;
static void on_term(int sig) { (void)sig; stop = 1; }

static pid_t start_containerd(void) {
  pid_t pid = fork();
  if (pid == 0) {
    int log = open("/var/log/containerd.log", O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (log >= 0) { dup2(log, 1); dup2(log, 2); close(log); }
    sigset_t none; sigemptyset(&none); sigprocmask(SIG_SETMASK, &none, NULL);
    execl("/usr/local/bin/containerd", "/usr/local/bin/containerd", (char *)NULL);
    _exit(127);
  }
  return pid;
}

int main(void) {
  struct sigaction term = {0};
  term.sa_handler = on_term;
  sigaction(SIGTERM, &term, NULL);
  sigaction(SIGINT, &term, NULL);
  pid_t containerd = start_containerd();
  while (!stop) {
    int status;
    pid_t pid = waitpid(-1, &status, 0);
    if (pid == containerd && !stop) { sleep(1); containerd = start_containerd(); }
    if (pid < 0 && !stop) sleep(1);
  }
  return 0;
}
