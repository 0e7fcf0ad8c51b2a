"""Headless Chromium driven over the DevTools protocol, for the tests of pages (the report, the demo).

Chromium is a test dependency (Debian's ``chromium``; ``.ci/run`` installs it): a test that
uses it fails, never skips, without it.
"""
import base64
import json
import shutil
import subprocess
import time
import urllib.request

import pytest

CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                  '--disable-background-networking', '--disable-component-update', '--disable-sync',
                  '--remote-allow-origins=*', '--window-size=1280,1000', '--hide-scrollbars']

class Chromium:
    """Headless Chromium with a fresh profile, driven over the DevTools protocol."""

    def __init__(self, profile):
        import websocket
        executable = shutil.which('chromium') or shutil.which('chromium-browser')
        if executable is None:
            pytest.fail('the report test needs Chromium: apt-get install -y chromium (.ci/run installs it)')
        profile.mkdir()
        self.process = subprocess.Popen([executable, *CHROMIUM_FLAGS, f'--user-data-dir={profile}',
                                         '--remote-debugging-port=0', 'about:blank'],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        port_file = profile / 'DevToolsActivePort'
        deadline = time.time() + 20
        while not (port_file.exists() and port_file.read_text().strip()):
            assert self.process.poll() is None and time.time() < deadline, 'Chromium did not start'
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        targets = json.load(no_proxy.open(f'http://127.0.0.1:{port}/json', timeout=10))
        page = next(target for target in targets if target['type'] == 'page')
        self.socket = websocket.create_connection(page['webSocketDebuggerUrl'], timeout=20, suppress_origin=True,
                                                  http_no_proxy=['127.0.0.1'])
        self.next_id = 0
        self.events = []

    def call(self, method, **params):
        self.next_id += 1
        self.socket.send(json.dumps({'id': self.next_id, 'method': method, 'params': params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get('id') == self.next_id:
                assert 'error' not in message, message
                return message['result']
            self.events.append(message)

    def open(self, path_or_url):
        """Load a file (a path) or a page (an ``http://`` URL); the seconds until its load event."""
        url = str(path_or_url)
        if '://' not in url:
            url = f'file://{url}'
        self.call('Page.enable')
        self.events.clear()
        started = time.perf_counter()
        self.call('Page.navigate', url=url)
        deadline = time.time() + 20
        while not any(event.get('method') == 'Page.loadEventFired' for event in self.events):
            assert time.time() < deadline, 'the page did not load'
            self.events.append(json.loads(self.socket.recv()))
        return time.perf_counter() - started

    def evaluate(self, expression):
        """The value of a JavaScript expression in the page (JSON-serialisable)."""
        result = self.call('Runtime.evaluate', expression=expression, returnByValue=True, awaitPromise=True)
        assert 'exceptionDetails' not in result, result['exceptionDetails']
        return result['result'].get('value')

    def screenshot(self, path, max_height=2400):
        """The whole page (up to ``max_height`` pixels) as PNG."""
        size = self.call('Page.getLayoutMetrics')['cssContentSize']
        clip = {'x': 0, 'y': 0, 'width': size['width'], 'height': min(size['height'], max_height), 'scale': 1}
        data = self.call('Page.captureScreenshot', format='png', clip=clip, captureBeyondViewport=True)['data']
        path.write_bytes(base64.b64decode(data))

    def close(self):
        try:
            self.socket.close()
        finally:
            self.process.terminate()
            self.process.wait(timeout=20)
