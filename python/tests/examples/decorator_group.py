from mcli_daemon import daemon_group

@daemon_group(group_name="my_group")
def my_group():
    """My group that can run via daemon"""
    pass
