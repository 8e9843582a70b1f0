# bash completion for clawrun: commands, subcommands and flags, from
# clawrun itself (--generate-bash-completion). Install:
#   sudo install -m 0644 contrib/completion/clawrun.bash /etc/bash_completion.d/clawrun
_clawrun() {
	local cur words
	cur=${COMP_WORDS[COMP_CWORD]}
	words=("${COMP_WORDS[@]:0:COMP_CWORD}")
	local IFS=$'\n'
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$("${words[@]}" "$cur" --generate-bash-completion 2>/dev/null)" -- "$cur"))
	else
		COMPREPLY=($(compgen -W "$("${words[@]}" --generate-bash-completion 2>/dev/null)" -- "$cur"))
	fi
}
complete -o bashdefault -o default -F _clawrun clawrun
