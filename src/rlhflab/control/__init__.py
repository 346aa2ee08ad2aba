"""Preference RL for control (Christiano et al. 2017): gymnasium environments, segments of the agent's own
rollouts, simulated teachers (B-Pref's irrational teachers, a limited view), a reward ensemble, and SB3 PPO on the
learned reward."""
