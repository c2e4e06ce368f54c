// loopctl completion SHELL / loopctl manpage: generated from the CLI11 definitions themselves.
#include <cstdio>

#include "cli_model.hpp"
#include "command.hpp"

namespace loopctl {
namespace {

const CLI::App& root_of(const CLI::App& app) {
  const CLI::App* a = &app;
  while (a->get_parent()) a = a->get_parent();
  return *a;
}

class Completion final : public Command {
 public:
  const char* name() const override { return "completion"; }
  const char* description() const override {
    return "Print a shell completion script: source <(loopctl completion bash)";
  }
  void setup(CLI::App& app) override {
    app_ = &app;
    app.add_option("shell", shell_, "bash, zsh or fish")
        ->required()
        ->check(CLI::IsMember({"bash", "zsh", "fish"}));
  }
  int run(loop::EventLoop&) override {
    CliCommand model = describe_cli(root_of(*app_));
    std::string out = shell_ == "bash"  ? bash_completion(model)
                      : shell_ == "zsh" ? zsh_completion(model)
                                        : fish_completion(model);
    std::fwrite(out.data(), 1, out.size(), stdout);
    return 0;
  }

 private:
  CLI::App* app_ = nullptr;
  std::string shell_;
};

class ManPage final : public Command {
 public:
  const char* name() const override { return "manpage"; }
  const char* description() const override { return "Print the man page (roff)"; }
  void setup(CLI::App& app) override {
    app_ = &app;
    app.group("");  // hidden: a build step, not a user command
  }
  int run(loop::EventLoop&) override {
    std::string out = man_page(describe_cli(root_of(*app_)));
    std::fwrite(out.data(), 1, out.size(), stdout);
    return 0;
  }

 private:
  CLI::App* app_ = nullptr;
};

}  // namespace

std::unique_ptr<Command> make_completion() {
  return std::make_unique<Completion>();
}
std::unique_ptr<Command> make_manpage() {
  return std::make_unique<ManPage>();
}

}  // namespace loopctl
