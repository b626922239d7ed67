#!/bin/bash
# Ferry's Bash bootstrap: the helper functions of Octopus Deploy's Calamari Bash bootstrap
# (get_octopusvariable, set_octopusvariable, new_octopusartifact, fail_step, write_verbose, ...),
# then the user's script, sourced into this same shell.
#
# The runner starts it as:   bash .ferry-bootstrap.sh script.sh
# in the step's working directory, with FERRY_VARIABLES_FILE naming a private file (mode 0600) of
# NUL-terminated name/value pairs: name NUL value NUL name NUL value NUL ...
# This file never contains variable data itself, and variable values are only ever handled as
# data (read -d '', quoted expansions, printf '%s'): nothing from a variable is evaluated.
#
# Every helper keeps its working state in `local` variables prefixed `__ferry_`, so it clobbers
# none of the script's variables, and each works under `set -euo pipefail`.

__ferry_script=${1-}
shift

# -----------------------------------------------------------------------------
# Base64 (service message values are base64 of UTF-8 text)
# -----------------------------------------------------------------------------
__ferry_b64_tool=
if command -v base64 >/dev/null 2>&1; then
    __ferry_b64_tool=base64
elif command -v openssl >/dev/null 2>&1; then
    __ferry_b64_tool=openssl
fi

__ferry_b64_alphabet=ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/

# Pure Bash encoder, used only when neither base64 nor openssl exists.
__ferry_b64_pure() {
    local LC_ALL=C
    local __ferry_s=${1-} __ferry_out= __ferry_i __ferry_n __ferry_b0 __ferry_b1 __ferry_b2 __ferry_v
    __ferry_n=${#__ferry_s}
    for ((__ferry_i = 0; __ferry_i < __ferry_n; __ferry_i += 3)); do
        printf -v __ferry_b0 '%d' "'${__ferry_s:__ferry_i:1}"
        __ferry_b1=0
        __ferry_b2=0
        if ((__ferry_i + 1 < __ferry_n)); then printf -v __ferry_b1 '%d' "'${__ferry_s:__ferry_i+1:1}"; fi
        if ((__ferry_i + 2 < __ferry_n)); then printf -v __ferry_b2 '%d' "'${__ferry_s:__ferry_i+2:1}"; fi
        __ferry_v=$(((__ferry_b0 & 255) << 16 | (__ferry_b1 & 255) << 8 | (__ferry_b2 & 255)))
        __ferry_out+=${__ferry_b64_alphabet:__ferry_v >> 18 & 63:1}${__ferry_b64_alphabet:__ferry_v >> 12 & 63:1}
        if ((__ferry_i + 1 < __ferry_n)); then
            __ferry_out+=${__ferry_b64_alphabet:__ferry_v >> 6 & 63:1}
        else
            __ferry_out+='='
        fi
        if ((__ferry_i + 2 < __ferry_n)); then
            __ferry_out+=${__ferry_b64_alphabet:__ferry_v & 63:1}
        else
            __ferry_out+='='
        fi
    done
    printf '%s' "$__ferry_out"
}

# -----------------------------------------------------------------------------
# encode_servicemessagevalue "text": prints the base64 of the text (UTF-8), on one line.
# -----------------------------------------------------------------------------
encode_servicemessagevalue() {
    local __ferry_out
    case $__ferry_b64_tool in
        base64) __ferry_out=$(printf '%s' "${1-}" | base64) ;;
        openssl) __ferry_out=$(printf '%s' "${1-}" | openssl enc -base64 -A) ;;
        *) __ferry_out=$(__ferry_b64_pure "${1-}") ;;
    esac
    printf '%s' "${__ferry_out//[$'\r\n']/}"
}

# -----------------------------------------------------------------------------
# decode_servicemessagevalue "base64": prints the decoded text.
# -----------------------------------------------------------------------------
decode_servicemessagevalue() {
    case $__ferry_b64_tool in
        base64) printf '%s' "${1-}" | base64 -d ;;
        openssl) printf '%s' "${1-}" | openssl enc -base64 -A -d ;;
        *)
            echo "decode_servicemessagevalue: neither base64 nor openssl is available" >&2
            return 1
            ;;
    esac
}

# -----------------------------------------------------------------------------
# The deployment's variables, loaded once from the private file, which is then deleted (so that
# nothing the script archives or uploads from its working directory carries them).
# Bash 4+: the associative array octopus_parameters (as Calamari's), plus a private copy that
# get_octopusvariable reads. Bash 3: two indexed arrays, searched linearly.
# -----------------------------------------------------------------------------
__ferry_vars_file=${FERRY_VARIABLES_FILE-}
unset FERRY_VARIABLES_FILE
__ferry_names=()
__ferry_values=()
if ((BASH_VERSINFO[0] >= 4)); then
    __ferry_assoc=1
    declare -A __ferry_vars=()
    declare -A octopus_parameters=()
else
    __ferry_assoc=0
fi
if [ -n "$__ferry_vars_file" ] && [ -f "$__ferry_vars_file" ]; then
    while IFS= read -r -d '' __ferry_k && IFS= read -r -d '' __ferry_v; do
        [ -n "$__ferry_k" ] || continue
        if ((__ferry_assoc)); then
            __ferry_vars["$__ferry_k"]=$__ferry_v
            octopus_parameters["$__ferry_k"]=$__ferry_v
        else
            __ferry_names+=("$__ferry_k")
            __ferry_values+=("$__ferry_v")
        fi
    done <"$__ferry_vars_file"
    rm -f -- "$__ferry_vars_file"
fi
unset __ferry_k __ferry_v __ferry_vars_file

# -----------------------------------------------------------------------------
# get_octopusvariable "Name": prints the variable's value (an empty line when it is not defined).
# Names are matched exactly (case-sensitive), as in Calamari.
# -----------------------------------------------------------------------------
get_octopusvariable() {
    local __ferry_name=${1-} __ferry_i
    if [ -n "$__ferry_name" ]; then
        if ((__ferry_assoc)); then
            if [ -n "${__ferry_vars["$__ferry_name"]+set}" ]; then
                printf '%s' "${__ferry_vars["$__ferry_name"]}"
                return 0
            fi
        else
            for ((__ferry_i = ${#__ferry_names[@]} - 1; __ferry_i >= 0; __ferry_i--)); do
                if [ "${__ferry_names[__ferry_i]}" = "$__ferry_name" ]; then
                    printf '%s' "${__ferry_values[__ferry_i]}"
                    return 0
                fi
            done
        fi
    fi
    echo ""
}

# -----------------------------------------------------------------------------
# set_octopusvariable "Name" "Value" [-sensitive]: an output variable for later steps.
# As in Calamari, an empty name or value is left out of the message.
# -----------------------------------------------------------------------------
set_octopusvariable() {
    local __ferry_msg='##octopus[setVariable'
    if [ -n "${1-}" ]; then
        __ferry_msg+=" name='$(encode_servicemessagevalue "$1")'"
    fi
    if [ -n "${2-}" ]; then
        __ferry_msg+=" value='$(encode_servicemessagevalue "$2")'"
    fi
    if [ "${3-}" = "-sensitive" ]; then
        __ferry_msg+=" sensitive='$(encode_servicemessagevalue "True")'"
    fi
    printf '%s]\n' "$__ferry_msg"
}

# -----------------------------------------------------------------------------
# new_octopusartifact "path" ["name"]: collects a file as an artifact after the step.
# A relative path is made absolute against the current directory (as the Python helper does).
# -----------------------------------------------------------------------------
new_octopusartifact() {
    local __ferry_path=${1-} __ferry_name=${2-} __ferry_len
    printf 'Collecting %s as an artifact...\n' "$__ferry_path"
    if [ -z "$__ferry_path" ] || [ ! -e "$__ferry_path" ]; then
        printf '"%s" does not exist.\n' "$__ferry_path" >&2
        exit 1
    fi
    if [ ! -f "$__ferry_path" ]; then
        printf '"%s" is not a file.\n' "$__ferry_path" >&2
        exit 1
    fi
    __ferry_len=$(wc -c <"$__ferry_path")
    __ferry_len=${__ferry_len//[[:space:]]/}
    case $__ferry_path in
        /*) ;;
        *) __ferry_path=$PWD/$__ferry_path ;;
    esac
    if [ -z "$__ferry_name" ]; then
        __ferry_name=${__ferry_path##*/}
    fi
    echo "##octopus[stdout-verbose]"
    printf 'Artifact %s will be collected from %s after this step completes\n' "$__ferry_name" "$__ferry_path"
    echo "##octopus[stdout-default]"
    printf "##octopus[createArtifact path='%s' name='%s' length='%s']\n" \
        "$(encode_servicemessagevalue "$__ferry_path")" \
        "$(encode_servicemessagevalue "$__ferry_name")" \
        "$(encode_servicemessagevalue "$__ferry_len")"
}

# -----------------------------------------------------------------------------
# fail_step ["message"]: fails the step now; the message replaces the generic failure text.
# -----------------------------------------------------------------------------
fail_step() {
    if [ -n "${1-}" ]; then
        printf "##octopus[resultMessage message='%s']\n" "$(encode_servicemessagevalue "$1")"
    fi
    exit 1
}

# -----------------------------------------------------------------------------
# update_progress percentage ["message"]
# -----------------------------------------------------------------------------
update_progress() {
    printf "##octopus[progress percentage='%s' message='%s']\n" \
        "$(encode_servicemessagevalue "${1-}")" "$(encode_servicemessagevalue "${2-}")"
}

# -----------------------------------------------------------------------------
# Messages at other log levels. Calamari prints `echo $1` (unquoted: word-split, globbed, first
# argument only); these print all their arguments verbatim.
# -----------------------------------------------------------------------------
__ferry_write_as() {
    local __ferry_level=$1 IFS=' '
    shift
    printf '##octopus[stdout-%s]\n%s\n##octopus[stdout-default]\n' "$__ferry_level" "$*"
}
write_verbose() { __ferry_write_as verbose "$@"; }
write_highlight() { __ferry_write_as highlight "$@"; }
write_wait() { __ferry_write_as wait "$@"; }
write_warning() { __ferry_write_as warning "$@"; }

# -----------------------------------------------------------------------------
# Dynamic infrastructure (Calamari defines these; Ferry reports them as unsupported messages).
# -----------------------------------------------------------------------------
remove-octopustarget() {
    printf "##octopus[delete-target machine='%s']\n" "$(encode_servicemessagevalue "${1-}")"
}

new_octopustarget() (
    parameters=""
    while :; do
        case "${1-}" in
            -n | --name)
                parameters="$parameters name='$(encode_servicemessagevalue "${2-}")'"
                shift 2
                ;;
            -t | --target-id)
                parameters="$parameters targetId='$(encode_servicemessagevalue "${2-}")'"
                shift 2
                ;;
            --inputs)
                parameters="$parameters inputs='$(encode_servicemessagevalue "${2-}")'"
                shift 2
                ;;
            --roles)
                parameters="$parameters octopusRoles='$(encode_servicemessagevalue "${2-}")'"
                shift 2
                ;;
            --worker-pool)
                parameters="$parameters octopusDefaultWorkerPoolIdOrName='$(encode_servicemessagevalue "${2-}")'"
                shift 2
                ;;
            --update-if-existing)
                parameters="$parameters updateIfExisting='$(encode_servicemessagevalue "true")'"
                shift
                ;;
            --)
                shift
                break
                ;;
            -*)
                echo "Error: Unknown option: $1" >&2
                exit 1
                ;;
            *) break ;;
        esac
    done
    echo "##octopus[createStepPackageTarget ${parameters}]"
)

# -----------------------------------------------------------------------------
# Environment information (verbose), as Calamari logs it, unless
# Octopus.Action.Script.SuppressEnvironmentLogging is True.
# -----------------------------------------------------------------------------
__ferry_log_environment() {
    # Builtins only: every fork here would be paid by every step on every target.
    local __ferry_suppress= __ferry_i __ferry_os= __ferry_host= __ferry_rel= __ferry_ver= __ferry_user=${USER-} __ferry_cpus=
    if ((__ferry_assoc)); then
        __ferry_suppress=${__ferry_vars["Octopus.Action.Script.SuppressEnvironmentLogging"]-}
    else
        for ((__ferry_i = ${#__ferry_names[@]} - 1; __ferry_i >= 0; __ferry_i--)); do
            if [ "${__ferry_names[__ferry_i]}" = "Octopus.Action.Script.SuppressEnvironmentLogging" ]; then
                __ferry_suppress=${__ferry_values[__ferry_i]}
                break
            fi
        done
    fi
    if [ "$__ferry_suppress" = "True" ]; then
        return 0
    fi
    [ -r /proc/sys/kernel/ostype ] && read -r __ferry_os </proc/sys/kernel/ostype
    [ -r /proc/sys/kernel/hostname ] && read -r __ferry_host </proc/sys/kernel/hostname
    [ -r /proc/sys/kernel/osrelease ] && read -r __ferry_rel </proc/sys/kernel/osrelease
    [ -r /proc/sys/kernel/version ] && read -r __ferry_ver </proc/sys/kernel/version
    if [ -z "$__ferry_user" ] && [ -r /etc/passwd ]; then
        local __ferry_n __ferry_x __ferry_uid __ferry_rest
        while IFS=: read -r __ferry_n __ferry_x __ferry_uid __ferry_rest; do
            if [ "$__ferry_uid" = "$EUID" ]; then
                __ferry_user=$__ferry_n
                break
            fi
        done </etc/passwd
    fi
    if [ -r /sys/devices/system/cpu/online ]; then
        local __ferry_ranges __ferry_r __ferry_a __ferry_b
        read -r __ferry_ranges </sys/devices/system/cpu/online
        __ferry_cpus=0
        IFS=, read -r -a __ferry_r <<<"$__ferry_ranges"
        for __ferry_i in "${__ferry_r[@]}"; do
            __ferry_a=${__ferry_i%-*}
            __ferry_b=${__ferry_i#*-}
            __ferry_cpus=$((__ferry_cpus + __ferry_b - __ferry_a + 1))
        done
    fi
    echo "##octopus[stdout-verbose]"
    echo "Bash Environment Information:"
    echo "  OperatingSystem: ${__ferry_os:-$OSTYPE} ${__ferry_host:-${HOSTNAME-}} $__ferry_rel $__ferry_ver ${HOSTTYPE-}"
    echo "  CurrentUser: ${__ferry_user:-$EUID}"
    echo "  HostName: ${__ferry_host:-${HOSTNAME-}}"
    echo "  ProcessorCount: $__ferry_cpus"
    echo "  CurrentDirectory: $PWD"
    echo "  TempDirectory: ${TMPDIR:-/tmp}"
    echo "  HostProcessID: $$"
    echo "  BashVersion: $BASH_VERSION"
    echo "##octopus[stdout-default]"
}
__ferry_log_environment

# -----------------------------------------------------------------------------
# The user's script, sourced (as Calamari does) so that the helpers above are in scope and its
# `exit`/`return` end the step. Its exit status is the step's.
# -----------------------------------------------------------------------------
if [ -z "$__ferry_script" ]; then
    echo "Ferry bootstrap: no script to run" >&2
    exit 2
fi
case $__ferry_script in
    /*) ;;
    *) __ferry_script=$PWD/$__ferry_script ;;
esac
source "$__ferry_script"
