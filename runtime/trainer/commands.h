/* commands.h: the trainer's commands, which trainer.c dispatches. Each
 * takes the words after its name, parses them with parse_command
 * (options.h), and returns the exit status: 0 success, 1 bad input or a
 * run that did not finish, 2 bad usage. */
#ifndef NETC_COMMANDS_H
#define NETC_COMMANDS_H

int cmd_train(int argc, char **argv);        /* train.c */
int cmd_eval(int argc, char **argv);         /* train.c */
int cmd_predict(int argc, char **argv);      /* train.c */
int cmd_inspect(int argc, char **argv);      /* inspect.c */
int cmd_info(int argc, char **argv);         /* inspect.c */
int cmd_step(int argc, char **argv);         /* step.c */
int cmd_bench(int argc, char **argv);        /* bench.c */
int cmd_bench_loader(int argc, char **argv); /* bench.c */
int cmd_compare(int argc, char **argv);      /* compare.c */
int cmd_export(int argc, char **argv);       /* export.c */

#endif
