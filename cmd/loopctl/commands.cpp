// The list of subcommands. Each make_* lives in its own cmd_*.cpp.
#include "command.hpp"

namespace loopctl {

std::unique_ptr<Command> make_hello();
std::unique_ptr<Command> make_date();
std::unique_ptr<Command> make_watch_fd();
std::unique_ptr<Command> make_signals();
std::unique_ptr<Command> make_echo_server();
std::unique_ptr<Command> make_echo_client();
std::unique_ptr<Command> make_tls_proxy();
std::unique_ptr<Command> make_exec();
std::unique_ptr<Command> make_udp_echo_server();
std::unique_ptr<Command> make_udp_echo_client();
std::unique_ptr<Command> make_sendfile();
std::unique_ptr<Command> make_resolve();
std::unique_ptr<Command> make_completion();
std::unique_ptr<Command> make_manpage();

std::vector<std::unique_ptr<Command>> all_commands() {
  std::vector<std::unique_ptr<Command>> cmds;
  cmds.push_back(make_hello());
  cmds.push_back(make_date());
  cmds.push_back(make_watch_fd());
  cmds.push_back(make_signals());
  cmds.push_back(make_echo_server());
  cmds.push_back(make_echo_client());
  cmds.push_back(make_tls_proxy());
  cmds.push_back(make_exec());
  cmds.push_back(make_udp_echo_server());
  cmds.push_back(make_udp_echo_client());
  cmds.push_back(make_sendfile());
  cmds.push_back(make_resolve());
  cmds.push_back(make_completion());
  cmds.push_back(make_manpage());
  return cmds;
}

}  // namespace loopctl
