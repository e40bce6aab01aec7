"""The worker process: its selector loop (the only place with epoll), boot, the command
channel, and the loop's housekeeping (heap trimming, eviction). Sits on top of everything else
in proxy."""
