# bash completion for loopctl. Generated from its CLI11 definitions by
# `loopctl completion bash`; do not edit by hand.
_loopctl() {
  local cur prev path word i words
  cur="${COMP_WORDS[COMP_CWORD]}"
  prev="${COMP_WORDS[COMP_CWORD-1]}"
  # The subcommand path typed so far (e.g. "sendfile serve").
  path=""
  for ((i = 1; i < COMP_CWORD; i++)); do
    word="${COMP_WORDS[i]}"
    case "${path:+$path }$word" in
      "hello") path="hello" ;;
      "date") path="date" ;;
      "watch-fd") path="watch-fd" ;;
      "signals") path="signals" ;;
      "echo-server") path="echo-server" ;;
      "echo-client") path="echo-client" ;;
      "tls-proxy") path="tls-proxy" ;;
      "exec") path="exec" ;;
      "udp-echo-server") path="udp-echo-server" ;;
      "udp-echo-client") path="udp-echo-client" ;;
      "sendfile") path="sendfile" ;;
      "sendfile serve") path="sendfile serve" ;;
      "sendfile send") path="sendfile send" ;;
      "resolve") path="resolve" ;;
      "completion") path="completion" ;;
    esac
  done
  case "$prev" in
    --trace-format) COMPREPLY=($(compgen -W "jsonl chrome" -- "$cur")); return ;;
    --cafile|--cert|--key|--path|--unix) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    --backlog|--connect|--count|--duration|--exec|--family|--fd|--host|--interval|--listen|--message|--offset|--port|--server-hostname|--signals|--slow-callback-ms|--starttls-timeout|--timeout|--type|--unix-mode|--upstream|--workers) return ;;
  esac
  case "$path" in
    "") words="-h --help --version --trace --trace-format --slow-callback-ms --debug --virtual-clock hello date watch-fd signals echo-server echo-client tls-proxy exec udp-echo-server udp-echo-client sendfile resolve completion" ;;
    "hello") words="-h --help" ;;
    "date") words="-h --help --interval --duration" ;;
    "watch-fd") words="-h --help --fd --path --raw" ;;
    "signals") words="-h --help --signals" ;;
    "echo-server") words="-h --help --host --port --unix --unix-mode --cert --key --backlog --reuse-port --workers --exec" ;;
    "echo-client") words="-h --help --message --count --timeout --tls --cafile --insecure --server-hostname" ;;
    "tls-proxy") words="-h --help --listen --upstream --cert --key --upstream-tls --cafile --insecure --server-hostname --workers --starttls --starttls-timeout" ;;
    "exec") words="-h --help --connect --tls --cafile --insecure --server-hostname" ;;
    "udp-echo-server") words="-h --help --host --port --workers" ;;
    "udp-echo-client") words="-h --help --message --count --timeout" ;;
    "sendfile") words="-h --help serve send" ;;
    "sendfile serve") words="-h --help --host --port --unix --cert --key --workers" ;;
    "sendfile send") words="-h --help --offset --count" ;;
    "resolve") words="-h --help --family --type" ;;
    "completion") words="-h --help bash zsh fish" ;;
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -F _loopctl loopctl
