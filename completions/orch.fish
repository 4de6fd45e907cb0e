# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_orch_global_optspecs
    string join \n h/help V/version
end

function __fish_orch_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_orch_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_orch_using_subcommand
    set -l cmd (__fish_orch_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c orch -n "__fish_orch_needs_command" -s h -l help -d 'Print help'
complete -c orch -n "__fish_orch_needs_command" -s V -l version -d 'Print version'
complete -c orch -n "__fish_orch_needs_command" -f -a "validate" -d 'Check topology files (and the policies they name) and policy files for CI; talks to no server. `--format github|sarif|gitlab` puts each problem on its line in code review'
complete -c orch -n "__fish_orch_needs_command" -f -a "status" -d 'Observe every server of a topology: a tree (or table) with role, source, threads, lag, GTID position, read_only, and the problems found'
complete -c orch -n "__fish_orch_needs_command" -f -a "plan" -d 'Compare the file with the live servers and print the safe, ordered steps that would make them match, why each is needed, and what is blocked. Changes nothing'
complete -c orch -n "__fish_orch_needs_command" -f -a "apply" -d 'Run a plan on the live servers: each step re-checked against a fresh observation, the cluster locked, every step recorded (`orch history`)'
complete -c orch -n "__fish_orch_needs_command" -f -a "watch" -d 'Watch clusters: detect failures holistically and recover per policy (failover of a dead primary, relocation of a dead intermediate\'s replicas, fencing of a second writable server or a returning former primary), locked and recorded'
complete -c orch -n "__fish_orch_needs_command" -f -a "failover" -d 'A person\'s failover of a dead primary, now: ignores anti-flap; refuses while the primary answers (a planned change of primary is a switchover: plan/apply) unless --force'
complete -c orch -n "__fish_orch_needs_command" -f -a "downtime" -d 'Downtime a host or a whole cluster: orch watch never recovers it automatically until the downtime ends or expires. Without --for or --end, lists the downtimes'
complete -c orch -n "__fish_orch_needs_command" -f -a "discover" -d 'Crawl a live topology from one server (up to its sources, down to every replica) and print it as a topology file that `orch validate` accepts'
complete -c orch -n "__fish_orch_needs_command" -f -a "history" -d 'Past runs (applies; later detections and recoveries) with their steps, newest first, from orch\'s state. Talks to no server'
complete -c orch -n "__fish_orch_needs_command" -f -a "sandbox" -d 'Local throw-away MariaDB (or MySQL) replication topologies'
complete -c orch -n "__fish_orch_needs_command" -f -a "completions" -d 'Print shell completions'
complete -c orch -n "__fish_orch_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c orch -n "__fish_orch_using_subcommand validate" -l format -r -f -a "human\t'Text for people'
json\t'One JSON document on stdout, with a documented, stable schema'
github\t'GitHub Actions workflow commands: each problem annotated on its line in the pull request'
sarif\t'A SARIF 2.1.0 log, for code scanning'
gitlab\t'A GitLab Code Quality report: each problem shown in the merge request'"
complete -c orch -n "__fish_orch_using_subcommand validate" -l strict -d 'Treat warnings as errors'
complete -c orch -n "__fish_orch_using_subcommand validate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c orch -n "__fish_orch_using_subcommand validate" -s V -l version -d 'Print version'
complete -c orch -n "__fish_orch_using_subcommand status" -l seed -d 'Observe the topology crawled from this server instead of a file' -r
complete -c orch -n "__fish_orch_using_subcommand status" -l user -d 'User orch connects as (with --seed)' -r
complete -c orch -n "__fish_orch_using_subcommand status" -l password-file -d 'File holding the password (mode 0600); otherwise $ORCH_PASSWORD' -r -F
complete -c orch -n "__fish_orch_using_subcommand status" -l replication-user -d 'Replication user written into a discovered topology' -r
complete -c orch -n "__fish_orch_using_subcommand status" -l limit -d 'At most this many servers are crawled' -r
complete -c orch -n "__fish_orch_using_subcommand status" -l format -r -f -a "human\t'Text for people'
json\t'One JSON document on stdout, with a documented, stable schema'"
complete -c orch -n "__fish_orch_using_subcommand status" -l state -d 'orch\'s state directory, where a failover made by orch records the live primary [default: $ORCH_STATE, else $XDG_STATE_HOME/orch, else ~/.local/state/orch]' -r -F
complete -c orch -n "__fish_orch_using_subcommand status" -l connect-timeout -d 'TCP connect timeout per server (e.g. 500ms, 2s)' -r
complete -c orch -n "__fish_orch_using_subcommand status" -l read-timeout -d 'Time allowed for the handshake and all queries to one server, after connecting' -r
complete -c orch -n "__fish_orch_using_subcommand status" -l concurrency -d 'Servers observed at once' -r
complete -c orch -n "__fish_orch_using_subcommand status" -l table -d 'Show a table instead of a tree'
complete -c orch -n "__fish_orch_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c orch -n "__fish_orch_using_subcommand status" -s V -l version -d 'Print version'
complete -c orch -n "__fish_orch_using_subcommand plan" -l observed -d 'Plan offline from `orch status --format json` output instead of connecting' -r -F
complete -c orch -n "__fish_orch_using_subcommand plan" -s o -l out -d 'Save the plan (JSON, with its fingerprint and the hashes of its files) for `orch apply`' -r -F
complete -c orch -n "__fish_orch_using_subcommand plan" -l format -r -f -a "human\t'Text for people'
json\t'One JSON document on stdout, with a documented, stable schema'
markdown\t'A Markdown document, for a pull request comment'"
complete -c orch -n "__fish_orch_using_subcommand plan" -l connect-timeout -d 'TCP connect timeout per server (e.g. 500ms, 2s)' -r
complete -c orch -n "__fish_orch_using_subcommand plan" -l read-timeout -d 'Time allowed for the handshake and all queries to one server, after connecting' -r
complete -c orch -n "__fish_orch_using_subcommand plan" -l concurrency -d 'Servers observed at once' -r
complete -c orch -n "__fish_orch_using_subcommand plan" -l show-sql -d 'Print each step\'s SQL for the server\'s flavour'
complete -c orch -n "__fish_orch_using_subcommand plan" -l detailed-exitcode -d 'Exit 2 when the plan has steps, 0 when there is nothing to do'
complete -c orch -n "__fish_orch_using_subcommand plan" -l detach-removed -d 'Stop and reset replication on servers replicating from the cluster that the file does not name (otherwise they are reported and left alone)'
complete -c orch -n "__fish_orch_using_subcommand plan" -l allow-switch-back -d 'After a failover, make the file\'s primary the primary again (otherwise the plan reports the drift and leaves the live primary in place)'
complete -c orch -n "__fish_orch_using_subcommand plan" -l allow-lost-replicas -d 'Go ahead with changes that leave replicas without a source that passes on transactions (otherwise such a change is blocked: lost-replica)'
complete -c orch -n "__fish_orch_using_subcommand plan" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c orch -n "__fish_orch_using_subcommand plan" -s V -l version -d 'Print version'
complete -c orch -n "__fish_orch_using_subcommand apply" -l format -r -f -a "human\t'Text for people'
json\t'One JSON document on stdout, with a documented, stable schema'"
complete -c orch -n "__fish_orch_using_subcommand apply" -l state -d 'orch\'s state directory [default: $ORCH_STATE, else $XDG_STATE_HOME/orch, else ~/.local/state/orch]' -r -F
complete -c orch -n "__fish_orch_using_subcommand apply" -l etcd -d 'etcd members (http(s)://HOST:PORT, comma-separated). watch: several watchers elect one leader there; only it acts, and it publishes each cluster\'s primary. apply: the cluster lock is taken there too, so an apply and a watch leader exclude each other' -r
complete -c orch -n "__fish_orch_using_subcommand apply" -l etcd-prefix -d 'Where orch\'s keys live in etcd' -r
complete -c orch -n "__fish_orch_using_subcommand apply" -l etcd-user -d 'etcd user (with --etcd-password-file, mode 0600)' -r
complete -c orch -n "__fish_orch_using_subcommand apply" -l etcd-password-file -r -F
complete -c orch -n "__fish_orch_using_subcommand apply" -l etcd-cacert -d 'CA certificates (PEM) that signed the https members\' certificates: trusted instead of the public roots' -r -F
complete -c orch -n "__fish_orch_using_subcommand apply" -l etcd-cert -d 'Client certificate (PEM, with its chain) for etcd\'s --client-cert-auth (with --etcd-key)' -r -F
complete -c orch -n "__fish_orch_using_subcommand apply" -l etcd-key -d 'The client certificate\'s private key (PEM, unencrypted)' -r -F
complete -c orch -n "__fish_orch_using_subcommand apply" -l connect-timeout -d 'TCP connect timeout per server (e.g. 500ms, 2s)' -r
complete -c orch -n "__fish_orch_using_subcommand apply" -l read-timeout -d 'Time allowed for the handshake and all queries to one server, after connecting' -r
complete -c orch -n "__fish_orch_using_subcommand apply" -l concurrency -d 'Servers observed at once' -r
complete -c orch -n "__fish_orch_using_subcommand apply" -l auto-approve -d 'Do not ask for approval'
complete -c orch -n "__fish_orch_using_subcommand apply" -l detach-removed -d 'As for `orch plan`'
complete -c orch -n "__fish_orch_using_subcommand apply" -l allow-switch-back -d 'As for `orch plan`'
complete -c orch -n "__fish_orch_using_subcommand apply" -l allow-lost-replicas -d 'As for `orch plan`'
complete -c orch -n "__fish_orch_using_subcommand apply" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c orch -n "__fish_orch_using_subcommand apply" -s V -l version -d 'Print version'
complete -c orch -n "__fish_orch_using_subcommand watch" -l state -d 'orch\'s state directory [default: $ORCH_STATE, else $XDG_STATE_HOME/orch, else ~/.local/state/orch]' -r -F
complete -c orch -n "__fish_orch_using_subcommand watch" -l listen -d 'Serve the HTTP API, the live topology page and /metrics on this address (e.g. 127.0.0.1:8080). Off by default' -r
complete -c orch -n "__fish_orch_using_subcommand watch" -l api-token-file -d 'A file (mode 0600) holding the bearer token the API\'s actions require. Without it, the actions (failover, downtime, ack) are disabled' -r -F
complete -c orch -n "__fish_orch_using_subcommand watch" -l api-auth -d 'Which endpoints require the token: the actions only, or every endpoint but /health and /ready' -r -f -a "actions\t'The actions (failover, downtime, ack); reading is open'
all\t'Every endpoint but /health and /ready'"
complete -c orch -n "__fish_orch_using_subcommand watch" -l log-format -d 'Log lines for people, or one JSON object per line for log shippers' -r -f -a "human\t'`TIME CLUSTER: what happened`, for people'
json\t'One JSON object per line (timestamp, level, cluster, message), for log shippers'"
complete -c orch -n "__fish_orch_using_subcommand watch" -l etcd -d 'etcd members (http(s)://HOST:PORT, comma-separated). watch: several watchers elect one leader there; only it acts, and it publishes each cluster\'s primary. apply: the cluster lock is taken there too, so an apply and a watch leader exclude each other' -r
complete -c orch -n "__fish_orch_using_subcommand watch" -l etcd-prefix -d 'Where orch\'s keys live in etcd' -r
complete -c orch -n "__fish_orch_using_subcommand watch" -l etcd-user -d 'etcd user (with --etcd-password-file, mode 0600)' -r
complete -c orch -n "__fish_orch_using_subcommand watch" -l etcd-password-file -r -F
complete -c orch -n "__fish_orch_using_subcommand watch" -l etcd-cacert -d 'CA certificates (PEM) that signed the https members\' certificates: trusted instead of the public roots' -r -F
complete -c orch -n "__fish_orch_using_subcommand watch" -l etcd-cert -d 'Client certificate (PEM, with its chain) for etcd\'s --client-cert-auth (with --etcd-key)' -r -F
complete -c orch -n "__fish_orch_using_subcommand watch" -l etcd-key -d 'The client certificate\'s private key (PEM, unencrypted)' -r -F
complete -c orch -n "__fish_orch_using_subcommand watch" -l connect-timeout -d 'TCP connect timeout per server (e.g. 500ms, 2s)' -r
complete -c orch -n "__fish_orch_using_subcommand watch" -l read-timeout -d 'Time allowed for the handshake and all queries to one server, after connecting' -r
complete -c orch -n "__fish_orch_using_subcommand watch" -l concurrency -d 'Servers observed at once' -r
complete -c orch -n "__fish_orch_using_subcommand watch" -l dry-run -d 'Detect, decide and record what would be done; change nothing'
complete -c orch -n "__fish_orch_using_subcommand watch" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c orch -n "__fish_orch_using_subcommand watch" -s V -l version -d 'Print version'
complete -c orch -n "__fish_orch_using_subcommand failover" -l to -d 'The replica to promote (it must be promotable)' -r
complete -c orch -n "__fish_orch_using_subcommand failover" -l state -d 'orch\'s state directory [default: $ORCH_STATE, else $XDG_STATE_HOME/orch, else ~/.local/state/orch]' -r -F
complete -c orch -n "__fish_orch_using_subcommand failover" -l etcd -d 'etcd members (http(s)://HOST:PORT, comma-separated). watch: several watchers elect one leader there; only it acts, and it publishes each cluster\'s primary. apply: the cluster lock is taken there too, so an apply and a watch leader exclude each other' -r
complete -c orch -n "__fish_orch_using_subcommand failover" -l etcd-prefix -d 'Where orch\'s keys live in etcd' -r
complete -c orch -n "__fish_orch_using_subcommand failover" -l etcd-user -d 'etcd user (with --etcd-password-file, mode 0600)' -r
complete -c orch -n "__fish_orch_using_subcommand failover" -l etcd-password-file -r -F
complete -c orch -n "__fish_orch_using_subcommand failover" -l etcd-cacert -d 'CA certificates (PEM) that signed the https members\' certificates: trusted instead of the public roots' -r -F
complete -c orch -n "__fish_orch_using_subcommand failover" -l etcd-cert -d 'Client certificate (PEM, with its chain) for etcd\'s --client-cert-auth (with --etcd-key)' -r -F
complete -c orch -n "__fish_orch_using_subcommand failover" -l etcd-key -d 'The client certificate\'s private key (PEM, unencrypted)' -r -F
complete -c orch -n "__fish_orch_using_subcommand failover" -l connect-timeout -d 'TCP connect timeout per server (e.g. 500ms, 2s)' -r
complete -c orch -n "__fish_orch_using_subcommand failover" -l read-timeout -d 'Time allowed for the handshake and all queries to one server, after connecting' -r
complete -c orch -n "__fish_orch_using_subcommand failover" -l concurrency -d 'Servers observed at once' -r
complete -c orch -n "__fish_orch_using_subcommand failover" -l ack -d 'Clear the anti-flap block of the cluster (after a failover, watch acts on the next failure at once)'
complete -c orch -n "__fish_orch_using_subcommand failover" -l force -d 'Fail over a primary that still answers: it is fenced first (read_only, writing sessions killed) and every replica takes what it has, then the failover runs'
complete -c orch -n "__fish_orch_using_subcommand failover" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c orch -n "__fish_orch_using_subcommand failover" -s V -l version -d 'Print version'
complete -c orch -n "__fish_orch_using_subcommand downtime" -l for -d 'How long (e.g. 30m, 2h; at most 30d without --force)' -r
complete -c orch -n "__fish_orch_using_subcommand downtime" -l reason -d 'Why (recorded, shown in watch\'s log)' -r
complete -c orch -n "__fish_orch_using_subcommand downtime" -l state -d 'orch\'s state directory [default: $ORCH_STATE, else $XDG_STATE_HOME/orch, else ~/.local/state/orch]' -r -F
complete -c orch -n "__fish_orch_using_subcommand downtime" -l etcd -d 'etcd members (http(s)://HOST:PORT, comma-separated). watch: several watchers elect one leader there; only it acts, and it publishes each cluster\'s primary. apply: the cluster lock is taken there too, so an apply and a watch leader exclude each other' -r
complete -c orch -n "__fish_orch_using_subcommand downtime" -l etcd-prefix -d 'Where orch\'s keys live in etcd' -r
complete -c orch -n "__fish_orch_using_subcommand downtime" -l etcd-user -d 'etcd user (with --etcd-password-file, mode 0600)' -r
complete -c orch -n "__fish_orch_using_subcommand downtime" -l etcd-password-file -r -F
complete -c orch -n "__fish_orch_using_subcommand downtime" -l etcd-cacert -d 'CA certificates (PEM) that signed the https members\' certificates: trusted instead of the public roots' -r -F
complete -c orch -n "__fish_orch_using_subcommand downtime" -l etcd-cert -d 'Client certificate (PEM, with its chain) for etcd\'s --client-cert-auth (with --etcd-key)' -r -F
complete -c orch -n "__fish_orch_using_subcommand downtime" -l etcd-key -d 'The client certificate\'s private key (PEM, unencrypted)' -r -F
complete -c orch -n "__fish_orch_using_subcommand downtime" -l cluster -d 'The whole cluster instead of one host'
complete -c orch -n "__fish_orch_using_subcommand downtime" -l force -d 'Allow a downtime longer than 30 days'
complete -c orch -n "__fish_orch_using_subcommand downtime" -l end -d 'End the downtime of HOST (or the cluster\'s) now'
complete -c orch -n "__fish_orch_using_subcommand downtime" -s h -l help -d 'Print help'
complete -c orch -n "__fish_orch_using_subcommand downtime" -s V -l version -d 'Print version'
complete -c orch -n "__fish_orch_using_subcommand discover" -l seed -r
complete -c orch -n "__fish_orch_using_subcommand discover" -l cluster -d 'Cluster name to write' -r
complete -c orch -n "__fish_orch_using_subcommand discover" -s o -l output -d 'Write the file here instead of stdout' -r -F
complete -c orch -n "__fish_orch_using_subcommand discover" -l user -d 'User orch connects as (with --seed)' -r
complete -c orch -n "__fish_orch_using_subcommand discover" -l password-file -d 'File holding the password (mode 0600); otherwise $ORCH_PASSWORD' -r -F
complete -c orch -n "__fish_orch_using_subcommand discover" -l replication-user -d 'Replication user written into a discovered topology' -r
complete -c orch -n "__fish_orch_using_subcommand discover" -l limit -d 'At most this many servers are crawled' -r
complete -c orch -n "__fish_orch_using_subcommand discover" -l connect-timeout -d 'TCP connect timeout per server (e.g. 500ms, 2s)' -r
complete -c orch -n "__fish_orch_using_subcommand discover" -l read-timeout -d 'Time allowed for the handshake and all queries to one server, after connecting' -r
complete -c orch -n "__fish_orch_using_subcommand discover" -l concurrency -d 'Servers observed at once' -r
complete -c orch -n "__fish_orch_using_subcommand discover" -s h -l help -d 'Print help'
complete -c orch -n "__fish_orch_using_subcommand discover" -s V -l version -d 'Print version'
complete -c orch -n "__fish_orch_using_subcommand history" -l cluster -d 'Only runs on this cluster' -r
complete -c orch -n "__fish_orch_using_subcommand history" -l since -d 'Only runs started within this long before now (e.g. 90m, 1h, 7d)' -r
complete -c orch -n "__fish_orch_using_subcommand history" -l limit -d 'At most this many runs (the newest)' -r
complete -c orch -n "__fish_orch_using_subcommand history" -l format -r -f -a "human\t'Text for people'
json\t'One JSON document on stdout, with a documented, stable schema'"
complete -c orch -n "__fish_orch_using_subcommand history" -l state -d 'orch\'s state directory [default: $ORCH_STATE, else $XDG_STATE_HOME/orch, else ~/.local/state/orch]' -r -F
complete -c orch -n "__fish_orch_using_subcommand history" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c orch -n "__fish_orch_using_subcommand history" -s V -l version -d 'Print version'
complete -c orch -n "__fish_orch_using_subcommand sandbox; and not __fish_seen_subcommand_from up status kill stop start freeze thaw down help" -s h -l help -d 'Print help'
complete -c orch -n "__fish_orch_using_subcommand sandbox; and not __fish_seen_subcommand_from up status kill stop start freeze thaw down help" -s V -l version -d 'Print version'
complete -c orch -n "__fish_orch_using_subcommand sandbox; and not __fish_seen_subcommand_from up status kill stop start freeze thaw down help" -f -a "up" -d 'Start N local servers replicating in SHAPE, then write DIR/topology.yaml'
complete -c orch -n "__fish_orch_using_subcommand sandbox; and not __fish_seen_subcommand_from up status kill stop start freeze thaw down help" -f -a "status" -d 'Show each instance: address, pid, state and role'
complete -c orch -n "__fish_orch_using_subcommand sandbox; and not __fish_seen_subcommand_from up status kill stop start freeze thaw down help" -f -a "kill" -d 'SIGKILL instance I (a crash)'
complete -c orch -n "__fish_orch_using_subcommand sandbox; and not __fish_seen_subcommand_from up status kill stop start freeze thaw down help" -f -a "stop" -d 'Stop instance I cleanly (SIGTERM, then wait)'
complete -c orch -n "__fish_orch_using_subcommand sandbox; and not __fish_seen_subcommand_from up status kill stop start freeze thaw down help" -f -a "start" -d 'Start instance I again with its previous configuration'
complete -c orch -n "__fish_orch_using_subcommand sandbox; and not __fish_seen_subcommand_from up status kill stop start freeze thaw down help" -f -a "freeze" -d 'SIGSTOP instance I (a hung server: TCP still accepts, nothing answers)'
complete -c orch -n "__fish_orch_using_subcommand sandbox; and not __fish_seen_subcommand_from up status kill stop start freeze thaw down help" -f -a "thaw" -d 'SIGCONT instance I'
complete -c orch -n "__fish_orch_using_subcommand sandbox; and not __fish_seen_subcommand_from up status kill stop start freeze thaw down help" -f -a "down" -d 'Stop every instance the sandbox started and remove DIR'
complete -c orch -n "__fish_orch_using_subcommand sandbox; and not __fish_seen_subcommand_from up status kill stop start freeze thaw down help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c orch -n "__fish_orch_using_subcommand sandbox; and __fish_seen_subcommand_from up" -s n -l nodes -d 'Number of instances (1 to 20)' -r
complete -c orch -n "__fish_orch_using_subcommand sandbox; and __fish_seen_subcommand_from up" -l shape -r -f -a "star\t'Every replica replicates from the primary'
chain\t'Each instance replicates from the one before it'
tree\t'A binary tree under the primary: intermediate sources with their own replicas'"
complete -c orch -n "__fish_orch_using_subcommand sandbox; and __fish_seen_subcommand_from up" -l port -d 'TCP port every instance listens on, each on its own 127.x.y.z address' -r
complete -c orch -n "__fish_orch_using_subcommand sandbox; and __fish_seen_subcommand_from up" -l cluster -d 'Cluster name written into topology.yaml' -r
complete -c orch -n "__fish_orch_using_subcommand sandbox; and __fish_seen_subcommand_from up" -l tls -d 'Serve TLS with a throw-away CA (DIR/tls/ca.pem), require it for orch\'s account, and have topology.yaml verify the servers\' identity'
complete -c orch -n "__fish_orch_using_subcommand sandbox; and __fish_seen_subcommand_from up" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c orch -n "__fish_orch_using_subcommand sandbox; and __fish_seen_subcommand_from up" -s V -l version -d 'Print version'
complete -c orch -n "__fish_orch_using_subcommand sandbox; and __fish_seen_subcommand_from status" -l format -r -f -a "human\t'Text for people'
json\t'One JSON document on stdout, with a documented, stable schema'"
complete -c orch -n "__fish_orch_using_subcommand sandbox; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c orch -n "__fish_orch_using_subcommand sandbox; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c orch -n "__fish_orch_using_subcommand sandbox; and __fish_seen_subcommand_from kill" -s h -l help -d 'Print help'
complete -c orch -n "__fish_orch_using_subcommand sandbox; and __fish_seen_subcommand_from kill" -s V -l version -d 'Print version'
complete -c orch -n "__fish_orch_using_subcommand sandbox; and __fish_seen_subcommand_from stop" -s h -l help -d 'Print help'
complete -c orch -n "__fish_orch_using_subcommand sandbox; and __fish_seen_subcommand_from stop" -s V -l version -d 'Print version'
complete -c orch -n "__fish_orch_using_subcommand sandbox; and __fish_seen_subcommand_from start" -s h -l help -d 'Print help'
complete -c orch -n "__fish_orch_using_subcommand sandbox; and __fish_seen_subcommand_from start" -s V -l version -d 'Print version'
complete -c orch -n "__fish_orch_using_subcommand sandbox; and __fish_seen_subcommand_from freeze" -s h -l help -d 'Print help'
complete -c orch -n "__fish_orch_using_subcommand sandbox; and __fish_seen_subcommand_from freeze" -s V -l version -d 'Print version'
complete -c orch -n "__fish_orch_using_subcommand sandbox; and __fish_seen_subcommand_from thaw" -s h -l help -d 'Print help'
complete -c orch -n "__fish_orch_using_subcommand sandbox; and __fish_seen_subcommand_from thaw" -s V -l version -d 'Print version'
complete -c orch -n "__fish_orch_using_subcommand sandbox; and __fish_seen_subcommand_from down" -s h -l help -d 'Print help'
complete -c orch -n "__fish_orch_using_subcommand sandbox; and __fish_seen_subcommand_from down" -s V -l version -d 'Print version'
complete -c orch -n "__fish_orch_using_subcommand sandbox; and __fish_seen_subcommand_from help" -f -a "up" -d 'Start N local servers replicating in SHAPE, then write DIR/topology.yaml'
complete -c orch -n "__fish_orch_using_subcommand sandbox; and __fish_seen_subcommand_from help" -f -a "status" -d 'Show each instance: address, pid, state and role'
complete -c orch -n "__fish_orch_using_subcommand sandbox; and __fish_seen_subcommand_from help" -f -a "kill" -d 'SIGKILL instance I (a crash)'
complete -c orch -n "__fish_orch_using_subcommand sandbox; and __fish_seen_subcommand_from help" -f -a "stop" -d 'Stop instance I cleanly (SIGTERM, then wait)'
complete -c orch -n "__fish_orch_using_subcommand sandbox; and __fish_seen_subcommand_from help" -f -a "start" -d 'Start instance I again with its previous configuration'
complete -c orch -n "__fish_orch_using_subcommand sandbox; and __fish_seen_subcommand_from help" -f -a "freeze" -d 'SIGSTOP instance I (a hung server: TCP still accepts, nothing answers)'
complete -c orch -n "__fish_orch_using_subcommand sandbox; and __fish_seen_subcommand_from help" -f -a "thaw" -d 'SIGCONT instance I'
complete -c orch -n "__fish_orch_using_subcommand sandbox; and __fish_seen_subcommand_from help" -f -a "down" -d 'Stop every instance the sandbox started and remove DIR'
complete -c orch -n "__fish_orch_using_subcommand sandbox; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c orch -n "__fish_orch_using_subcommand completions" -s h -l help -d 'Print help'
complete -c orch -n "__fish_orch_using_subcommand completions" -s V -l version -d 'Print version'
complete -c orch -n "__fish_orch_using_subcommand help; and not __fish_seen_subcommand_from validate status plan apply watch failover downtime discover history sandbox completions help" -f -a "validate" -d 'Check topology files (and the policies they name) and policy files for CI; talks to no server. `--format github|sarif|gitlab` puts each problem on its line in code review'
complete -c orch -n "__fish_orch_using_subcommand help; and not __fish_seen_subcommand_from validate status plan apply watch failover downtime discover history sandbox completions help" -f -a "status" -d 'Observe every server of a topology: a tree (or table) with role, source, threads, lag, GTID position, read_only, and the problems found'
complete -c orch -n "__fish_orch_using_subcommand help; and not __fish_seen_subcommand_from validate status plan apply watch failover downtime discover history sandbox completions help" -f -a "plan" -d 'Compare the file with the live servers and print the safe, ordered steps that would make them match, why each is needed, and what is blocked. Changes nothing'
complete -c orch -n "__fish_orch_using_subcommand help; and not __fish_seen_subcommand_from validate status plan apply watch failover downtime discover history sandbox completions help" -f -a "apply" -d 'Run a plan on the live servers: each step re-checked against a fresh observation, the cluster locked, every step recorded (`orch history`)'
complete -c orch -n "__fish_orch_using_subcommand help; and not __fish_seen_subcommand_from validate status plan apply watch failover downtime discover history sandbox completions help" -f -a "watch" -d 'Watch clusters: detect failures holistically and recover per policy (failover of a dead primary, relocation of a dead intermediate\'s replicas, fencing of a second writable server or a returning former primary), locked and recorded'
complete -c orch -n "__fish_orch_using_subcommand help; and not __fish_seen_subcommand_from validate status plan apply watch failover downtime discover history sandbox completions help" -f -a "failover" -d 'A person\'s failover of a dead primary, now: ignores anti-flap; refuses while the primary answers (a planned change of primary is a switchover: plan/apply) unless --force'
complete -c orch -n "__fish_orch_using_subcommand help; and not __fish_seen_subcommand_from validate status plan apply watch failover downtime discover history sandbox completions help" -f -a "downtime" -d 'Downtime a host or a whole cluster: orch watch never recovers it automatically until the downtime ends or expires. Without --for or --end, lists the downtimes'
complete -c orch -n "__fish_orch_using_subcommand help; and not __fish_seen_subcommand_from validate status plan apply watch failover downtime discover history sandbox completions help" -f -a "discover" -d 'Crawl a live topology from one server (up to its sources, down to every replica) and print it as a topology file that `orch validate` accepts'
complete -c orch -n "__fish_orch_using_subcommand help; and not __fish_seen_subcommand_from validate status plan apply watch failover downtime discover history sandbox completions help" -f -a "history" -d 'Past runs (applies; later detections and recoveries) with their steps, newest first, from orch\'s state. Talks to no server'
complete -c orch -n "__fish_orch_using_subcommand help; and not __fish_seen_subcommand_from validate status plan apply watch failover downtime discover history sandbox completions help" -f -a "sandbox" -d 'Local throw-away MariaDB (or MySQL) replication topologies'
complete -c orch -n "__fish_orch_using_subcommand help; and not __fish_seen_subcommand_from validate status plan apply watch failover downtime discover history sandbox completions help" -f -a "completions" -d 'Print shell completions'
complete -c orch -n "__fish_orch_using_subcommand help; and not __fish_seen_subcommand_from validate status plan apply watch failover downtime discover history sandbox completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c orch -n "__fish_orch_using_subcommand help; and __fish_seen_subcommand_from sandbox" -f -a "up" -d 'Start N local servers replicating in SHAPE, then write DIR/topology.yaml'
complete -c orch -n "__fish_orch_using_subcommand help; and __fish_seen_subcommand_from sandbox" -f -a "status" -d 'Show each instance: address, pid, state and role'
complete -c orch -n "__fish_orch_using_subcommand help; and __fish_seen_subcommand_from sandbox" -f -a "kill" -d 'SIGKILL instance I (a crash)'
complete -c orch -n "__fish_orch_using_subcommand help; and __fish_seen_subcommand_from sandbox" -f -a "stop" -d 'Stop instance I cleanly (SIGTERM, then wait)'
complete -c orch -n "__fish_orch_using_subcommand help; and __fish_seen_subcommand_from sandbox" -f -a "start" -d 'Start instance I again with its previous configuration'
complete -c orch -n "__fish_orch_using_subcommand help; and __fish_seen_subcommand_from sandbox" -f -a "freeze" -d 'SIGSTOP instance I (a hung server: TCP still accepts, nothing answers)'
complete -c orch -n "__fish_orch_using_subcommand help; and __fish_seen_subcommand_from sandbox" -f -a "thaw" -d 'SIGCONT instance I'
complete -c orch -n "__fish_orch_using_subcommand help; and __fish_seen_subcommand_from sandbox" -f -a "down" -d 'Stop every instance the sandbox started and remove DIR'
