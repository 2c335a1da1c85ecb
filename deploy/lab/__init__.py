"""`shoal lab`: a multi-host Shoal cluster on one machine, hosts being network namespaces.

state.py what the lab made (state.json), procs.py detached processes tracked by pid + start ticks,
netns.py the underlay switch and hosts, cleanup.py what an agent leaves behind, launch.py how each
daemon is started, lab.py up/down/status and the faults.
"""
