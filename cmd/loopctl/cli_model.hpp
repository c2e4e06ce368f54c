// loopctl's command line as data, read off the CLI11 definitions, so that shell completions and
// the man page are generated from the same source as the parser and cannot drift from it.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace loopctl {

struct CliOption {
  std::vector<std::string> names;  // "--interval", "-h"
  std::string positional;          // the name of a positional argument, else empty
  std::string description;
  std::string type_name;  // e.g. "FLOAT:POSITIVE"; empty for a flag
  std::string default_value;
  bool takes_value = false;
  std::vector<std::string> choices;  // fixed values, when the option has them
  bool is_file = false;              // completes file names
};

struct CliCommand {
  std::string name;
  std::string description;
  std::vector<CliOption> options;
  std::vector<CliCommand> subcommands;
};

/// The model of `app` and all its (visible) subcommands.
CliCommand describe_cli(const CLI::App& app);

std::string bash_completion(const CliCommand& root);
std::string zsh_completion(const CliCommand& root);
std::string fish_completion(const CliCommand& root);
std::string man_page(const CliCommand& root);

}  // namespace loopctl
