#include "cli_model.hpp"

#include <set>

namespace loopctl {

namespace {

// Values some options take, which CLI11's validators do not expose.
void annotate(CliOption& o) {
  static const std::set<std::string> file_options = {"--cert", "--key", "--cafile", "--path",
                                                     "--unix"};
  for (auto& n : o.names) {
    if (file_options.count(n)) o.is_file = true;
    if (n == "--trace-format") o.choices = {"jsonl", "chrome"};
  }
  if (o.positional == "FILE") o.is_file = true;
  if (o.positional == "shell") o.choices = {"bash", "zsh", "fish"};
}

}  // namespace

CliCommand describe_cli(const CLI::App& app) {
  CliCommand cmd;
  cmd.name = app.get_name();
  cmd.description = app.get_description();
  for (const CLI::Option* opt : app.get_options()) {
    if (opt->get_group().empty()) continue;  // hidden
    CliOption o;
    if (opt->get_positional()) {
      o.positional = opt->get_name();
    } else {
      for (auto& s : opt->get_snames()) o.names.push_back("-" + s);
      for (auto& l : opt->get_lnames()) o.names.push_back("--" + l);
    }
    o.description = opt->get_description();
    // --trace takes its value only attached with '=' (see main.cpp): a flag to the shells.
    o.takes_value = (opt->get_expected_min() > 0 || opt->get_positional()) &&
                    opt->get_lnames() != std::vector<std::string>{"trace"};
    if (o.takes_value) o.type_name = opt->get_type_name();
    o.default_value = opt->get_default_str();
    annotate(o);
    cmd.options.push_back(std::move(o));
  }
  for (const CLI::App* sub :
       app.get_subcommands([](const CLI::App* a) { return !a->get_group().empty(); }))
    cmd.subcommands.push_back(describe_cli(*sub));
  return cmd;
}

// ---- bash --------------------------------------------------------------------------------

namespace {

std::string join(const std::vector<std::string>& v, const std::string& sep = " ") {
  std::string out;
  for (auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

std::vector<std::string> option_words(const CliCommand& c) {
  std::vector<std::string> words;
  for (auto& o : c.options) {
    for (auto& n : o.names) words.push_back(n);
    if (!o.positional.empty())
      for (auto& v : o.choices) words.push_back(v);
  }
  return words;
}

void bash_cases(const CliCommand& c, const std::string& path, std::string& out) {
  std::vector<std::string> words = option_words(c);
  for (auto& s : c.subcommands) words.push_back(s.name);
  out += "    \"" + path + "\") words=\"" + join(words) + "\" ;;\n";
  for (auto& s : c.subcommands) bash_cases(s, path.empty() ? s.name : path + " " + s.name, out);
}

void collect_values(const CliCommand& c, std::set<std::string>& files,
                    std::vector<std::pair<std::string, std::string>>& choices,
                    std::set<std::string>& valued) {
  for (auto& o : c.options) {
    for (auto& n : o.names) {
      if (o.is_file) files.insert(n);
      if (!o.choices.empty()) choices.push_back({n, join(o.choices)});
      if (o.takes_value) valued.insert(n);
    }
  }
  for (auto& s : c.subcommands) collect_values(s, files, choices, valued);
}

void collect_paths(const CliCommand& c, const std::string& path, std::vector<std::string>& out) {
  for (auto& s : c.subcommands) {
    std::string p = path.empty() ? s.name : path + " " + s.name;
    out.push_back(p);
    collect_paths(s, p, out);
  }
}

}  // namespace

std::string bash_completion(const CliCommand& root) {
  std::set<std::string> files, valued;
  std::vector<std::pair<std::string, std::string>> choices;
  collect_values(root, files, choices, valued);
  std::vector<std::string> paths;
  collect_paths(root, "", paths);

  std::string out;
  out += "# bash completion for loopctl. Generated from its CLI11 definitions by\n";
  out += "# `loopctl completion bash`; do not edit by hand.\n";
  out += "_loopctl() {\n";
  out += "  local cur prev path word i words\n";
  out += "  cur=\"${COMP_WORDS[COMP_CWORD]}\"\n";
  out += "  prev=\"${COMP_WORDS[COMP_CWORD-1]}\"\n";
  out += "  # The subcommand path typed so far (e.g. \"sendfile serve\").\n";
  out += "  path=\"\"\n";
  out += "  for ((i = 1; i < COMP_CWORD; i++)); do\n";
  out += "    word=\"${COMP_WORDS[i]}\"\n";
  out += "    case \"${path:+$path }$word\" in\n";
  for (auto& p : paths) out += "      \"" + p + "\") path=\"" + p + "\" ;;\n";
  out += "    esac\n";
  out += "  done\n";
  out += "  case \"$prev\" in\n";
  for (auto& [name, values] : choices)
    out +=
        "    " + name + ") COMPREPLY=($(compgen -W \"" + values + "\" -- \"$cur\")); return ;;\n";
  if (!files.empty())
    out += "    " + join({files.begin(), files.end()}, "|") +
           ") COMPREPLY=($(compgen -f -- \"$cur\")); return ;;\n";
  std::set<std::string> plain_valued;
  for (auto& v : valued)
    if (!files.count(v) &&
        std::none_of(choices.begin(), choices.end(), [&](auto& c) { return c.first == v; }))
      plain_valued.insert(v);
  if (!plain_valued.empty())
    out += "    " + join({plain_valued.begin(), plain_valued.end()}, "|") + ") return ;;\n";
  out += "  esac\n";
  out += "  case \"$path\" in\n";
  bash_cases(root, "", out);
  out += "  esac\n";
  out += "  COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n";
  out += "}\n";
  out += "complete -F _loopctl loopctl\n";
  return out;
}

// ---- zsh ---------------------------------------------------------------------------------

namespace {

std::string zsh_escape(std::string s) {
  std::string out;
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else if (c == '[' || c == ']' || c == ':')
      out += std::string("\\") + c;
    else
      out += c;
  }
  return out;
}

void zsh_function(const CliCommand& c, const std::string& fn, std::string& out) {
  out += fn + "() {\n";
  out += "  local -a args\n";
  out += "  args=(\n";
  for (auto& o : c.options) {
    if (!o.positional.empty()) continue;
    std::string desc = zsh_escape(o.description.substr(0, 80));
    std::string action;
    if (o.takes_value) {
      if (o.is_file)
        action = ":file:_files";
      else if (!o.choices.empty())
        action = ":value:(" + join(o.choices) + ")";
      else
        action = ":value: ";
    }
    for (auto& n : o.names) {
      // --trace's value is only ever attached with '='.
      if (n == "--trace") action = ":file:_files";
      out += "    '" + n + (n == "--trace" ? "=-" : "") + "[" + desc + "]" + action + "'\n";
    }
  }
  out += "  )\n";
  if (!c.subcommands.empty()) {
    out += "  args+=('1:command:->cmd' '*::arg:->args')\n";
    out += "  _arguments -s $args && return\n";
    out += "  case $state in\n";
    out += "    cmd)\n      local -a cmds\n      cmds=(\n";
    for (auto& s : c.subcommands)
      out += "        '" + s.name + ":" + zsh_escape(s.description.substr(0, 80)) + "'\n";
    out += "      )\n      _describe command cmds ;;\n";
    out += "    args)\n      case $words[1] in\n";
    for (auto& s : c.subcommands) out += "        " + s.name + ") " + fn + "_" + s.name + " ;;\n";
    out += "      esac ;;\n  esac\n";
  } else {
    for (auto& o : c.options)
      if (!o.positional.empty())
        out += std::string("  args+=('*:") + o.positional + ":" +
               (o.is_file           ? "_files"
                : o.choices.empty() ? " "
                                    : "(" + join(o.choices) + ")") +
               "')\n";
    out += "  _arguments -s $args\n";
  }
  out += "}\n";
  for (auto& s : c.subcommands) zsh_function(s, fn + "_" + s.name, out);
}

}  // namespace

std::string zsh_completion(const CliCommand& root) {
  std::string out = "#compdef loopctl\n";
  out += "# zsh completion for loopctl. Generated from its CLI11 definitions by\n";
  out += "# `loopctl completion zsh`; do not edit by hand.\n";
  zsh_function(root, "_loopctl", out);
  out += "_loopctl \"$@\"\n";
  return out;
}

// ---- fish --------------------------------------------------------------------------------

namespace {

std::string fish_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += (c == '\'' ? std::string("\\'") : std::string(1, c));
  return out + "'";
}

void fish_lines(const CliCommand& c, const std::vector<std::string>& path, std::string& out) {
  std::string cond;
  if (path.empty()) {
    cond = "__fish_use_subcommand";
  } else {
    cond = "__fish_seen_subcommand_from " + path.back();
  }
  for (auto& o : c.options) {
    if (!o.positional.empty()) continue;
    std::string line = "complete -c loopctl -n " + fish_quote(cond);
    for (auto& n : o.names) {
      if (n.rfind("--", 0) == 0)
        line += " -l " + n.substr(2);
      else
        line += " -s " + n.substr(1);
    }
    if (o.takes_value) line += o.is_file ? " -r -F" : " -r -f";
    if (!o.choices.empty()) line += " -a " + fish_quote(join(o.choices));
    line += " -d " + fish_quote(o.description.substr(0, 80));
    out += line + "\n";
  }
  for (auto& s : c.subcommands)
    out += "complete -c loopctl -f -n " + fish_quote(cond) + " -a " + s.name + " -d " +
           fish_quote(s.description.substr(0, 80)) + "\n";
  for (auto& s : c.subcommands) {
    auto p = path;
    p.push_back(s.name);
    fish_lines(s, p, out);
  }
}

}  // namespace

std::string fish_completion(const CliCommand& root) {
  std::string out = "# fish completion for loopctl. Generated from its CLI11 definitions by\n";
  out += "# `loopctl completion fish`; do not edit by hand.\n";
  fish_lines(root, {}, out);
  return out;
}

// ---- man page ----------------------------------------------------------------------------

namespace {

std::string roff(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\')
      out += "\\e";
    else if (c == '-')
      out += "\\-";
    else
      out += c;
  }
  if (!out.empty() && (out[0] == '.' || out[0] == '\'')) out = "\\&" + out;
  return out;
}

void man_options(const CliCommand& c, std::string& out) {
  for (auto& o : c.options) {
    out += ".TP\n";
    std::string head = o.positional.empty() ? join(o.names, ", ") : o.positional;
    out += "\\fB" + roff(head) + "\\fR";
    if (o.takes_value && o.positional.empty()) out += " \\fI" + roff(o.type_name) + "\\fR";
    out += "\n" + roff(o.description);
    if (!o.default_value.empty()) out += " (default: " + roff(o.default_value) + ")";
    out += "\n";
  }
}

void man_commands(const CliCommand& c, const std::string& prefix, std::string& out) {
  for (auto& s : c.subcommands) {
    std::string full = prefix.empty() ? s.name : prefix + " " + s.name;
    out += ".SS \"" + roff(full) + "\"\n" + roff(s.description) + "\n";
    if (!s.options.empty()) {
      out += ".RS\n";
      man_options(s, out);
      out += ".RE\n";
    }
    man_commands(s, full, out);
  }
}

}  // namespace

std::string man_page(const CliCommand& root) {
  std::string out;
  out += ".\\\" Generated from loopctl's CLI11 definitions by `loopctl manpage`; do not edit.\n";
  out += ".TH LOOPCTL 1 \"\" \"loopctl\" \"User Commands\"\n";
  out +=
      ".SH NAME\nloopctl \\- quick servers and clients, and asyncio's event loop examples, on "
      "libloop\n";
  out +=
      ".SH SYNOPSIS\n\\fBloopctl\\fR [\\fIGLOBAL OPTIONS\\fR] \\fISUBCOMMAND\\fR "
      "[\\fIOPTIONS\\fR]\n";
  out += ".SH DESCRIPTION\n" + roff(root.description) + "\n";
  out +=
      ".PP\nEndpoints are written HOST:PORT, [V6ADDR]:PORT or unix:PATH (a leading @ in PATH "
      "names the Linux abstract namespace). Servers print one line \\fBlistening on "
      "HOST:PORT\\fR per bound socket as soon as they accept, run until SIGINT or SIGTERM, "
      "then stop listening at once, let open connections finish for up to 5 seconds, and "
      "exit 0.\n";
  out += ".SH GLOBAL OPTIONS\n";
  man_options(root, out);
  out += ".SH SUBCOMMANDS\n";
  man_commands(root, "", out);
  out +=
      ".SH TRACES\nWith \\fB\\-\\-trace\\fR every loop iteration (poll timeout, events, "
      "ready callbacks), every callback (name, kind, when it was scheduled, when it "
      "started, how long it ran) and every transport event is written as JSON Lines "
      "(documented in docs/trace.md, with a JSON Schema) or, with "
      "\\fB\\-\\-trace\\-format=chrome\\fR, as a Chrome Trace Event document that Perfetto "
      "and chrome://tracing show as a timeline.\n";
  out +=
      ".SH EXIT STATUS\n0 success (a server stopped by SIGINT or SIGTERM after a clean "
      "shutdown included); 1 a runtime failure; 2 a usage error (unknown option, bad value, "
      "missing argument). Errors are one line on stderr beginning \\fBloopctl: error:\\fR.\n";
  out +=
      ".SH ENVIRONMENT\n.TP\n\\fBLOOP_DEBUG\\fR\nWhen non-empty, the loop runs in debug "
      "mode, as \\fB\\-\\-debug\\fR.\n";
  out +=
      ".SH EXAMPLES\n.nf\nloopctl hello\nloopctl \\-\\-trace date \\-\\-interval 0.5 "
      "\\-\\-duration 2\nloopctl \\-\\-trace=trace.json \\-\\-trace\\-format=chrome hello\n.fi\n";
  out += ".SH SEE ALSO\nThe asyncio documentation, \"Base Event Loop\".\n";
  return out;
}

}  // namespace loopctl
