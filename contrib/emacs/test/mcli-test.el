;;; mcli-test.el --- Tests of mcli.el against a running server  -*- lexical-binding: t; -*-

;;; Commentary:

;; Run by tests/tests/editors.rs, which starts a server in a fresh
;; directory with two script commands and sets:
;;
;;   MCLI_TEST_CLIENT   the mcli-client binary to use
;;   MCLI_TEST_DIR      an existing directory to run commands in
;;   MCLI_TEST_GO       the file whose creation lets `slowlines' go on
;;   MCLI_TEST_PIDFILE  where `longrun' writes its pid
;;
;; `slowlines' prints "line 1", its args and its directory, waits for
;; MCLI_TEST_GO, then prints "line 2".  `longrun' writes its pid, prints
;; "started" and sleeps for 300 s.  `latin1' prints "caf\351\n", which is
;; not UTF-8.
;;
;;   emacs --batch -Q -L contrib/emacs -l contrib/emacs/test/mcli-test.el \
;;         -f ert-run-tests-batch-and-exit

;;; Code:

(require 'ert)
(require 'mcli)

(setq mcli-client-program (getenv "MCLI_TEST_CLIENT"))

(defun mcli-test--wait (what pred)
  "Process events until PRED holds; fail naming WHAT after 60 s."
  (let ((deadline (+ (float-time) 60)))
    (while (not (funcall pred))
      (when (> (float-time) deadline)
        (ert-fail (format "timed out waiting until %s" what)))
      (accept-process-output nil 0.05))))

(defun mcli-test--text (buf)
  "Return the text of BUF."
  (with-current-buffer buf (buffer-substring-no-properties (point-min) (point-max))))

(defun mcli-test--mode-line (buf)
  "Return the state that BUF shows in its mode line."
  ;; `format-mode-line' gives "" in batch mode: join the strings instead.
  (mapconcat (lambda (part) (if (stringp part) (substring-no-properties part) ""))
             (buffer-local-value 'mode-line-process buf) ""))

(defun mcli-test--run (command &rest args)
  "Run COMMAND with ARGS in MCLI_TEST_DIR and return its buffer."
  (let ((default-directory (file-name-as-directory (getenv "MCLI_TEST_DIR"))))
    (mcli-run command args)))

(defun mcli-test--wait-end (buf)
  "Wait until the command of BUF has ended."
  (mcli-test--wait (format "the command of %s ends" (buffer-name buf))
                   (lambda () (not (equal (buffer-local-value 'mcli-status buf)
                                          "running")))))

(defun mcli-test--longrun-pid ()
  "Return the pid that `longrun' wrote."
  (let ((pid (with-temp-buffer
               (insert-file-contents (getenv "MCLI_TEST_PIDFILE"))
               (string-to-number (buffer-string)))))
    (should (> pid 0))
    pid))

(defun mcli-test--wait-gone (pid)
  "Wait until process PID is gone (or a zombie about to be reaped)."
  (mcli-test--wait (format "process %d is gone" pid)
                   (lambda ()
                     (let ((state (alist-get 'state (process-attributes pid))))
                       (or (null state) (equal state "Z"))))))

(ert-deftest mcli-test-names-come-from-list ()
  (let ((names (mcli-command-names)))
    (dolist (name '("echo" "hello" "exit" "slowlines" "longrun"))
      (should (member name names))))
  (let ((table (mcli--completion-table (mcli--list))))
    (should (equal (all-completions "slow" table) '("slowlines")))
    (should (equal (try-completion "lon" table) "longrun"))
    (should (equal (all-completions "zz" table) nil))))

(ert-deftest mcli-test-output-streams-into-the-buffer ()
  (let ((buf (mcli-test--run "slowlines" "a b" "c")))
    (should (eq (buffer-local-value 'major-mode buf) 'mcli-output-mode))
    (should (with-current-buffer buf (derived-mode-p 'compilation-mode)))
    ;; The first line shows while the command still runs (it waits for us).
    (mcli-test--wait "line 1 is in the buffer"
                     (lambda () (string-match-p "^line 1$" (mcli-test--text buf))))
    (should (equal (buffer-local-value 'mcli-status buf) "running"))
    (should (equal (mcli-test--mode-line buf) ":run"))
    (should-not (string-match-p "line 2" (mcli-test--text buf)))
    (with-temp-file (getenv "MCLI_TEST_GO"))
    (mcli-test--wait-end buf)
    (let ((text (mcli-test--text buf)))
      (should (string-match-p "^line 2$" text))
      (should (string-match-p "^args: a b|c$" text))
      (should (string-match-p (concat "^" (regexp-quote (getenv "MCLI_TEST_DIR")) "$")
                              text))
      (should (string-match-p "mcli: slowlines completed" text)))
    (should (equal (buffer-local-value 'mcli-status buf) "completed"))
    (should (equal (mcli-test--mode-line buf) ":exit [0]"))))

(ert-deftest mcli-test-bytes-that-are-not-utf-8-arrive ()
  ;; `latin1' prints "caf\351\n"; the server sends that chunk as `data_b64'.
  (let ((buf (mcli-test--run "latin1")))
    (mcli-test--wait-end buf)
    (should (equal (buffer-local-value 'mcli-status buf) "completed"))
    (with-current-buffer buf
      (goto-char (point-min))
      (should (re-search-forward "^caf" nil t))
      (should (equal (encode-coding-string
                      (buffer-substring-no-properties (point) (line-end-position))
                      'utf-8)
                     "\351")))))

(ert-deftest mcli-test-a-failure-shows-its-exit-status ()
  (let ((buf (mcli-test--run "exit" "3")))
    (mcli-test--wait-end buf)
    (should (equal (buffer-local-value 'mcli-status buf) "failed"))
    (should (equal (plist-get (buffer-local-value 'mcli-result buf) :exit_code) 3))
    (should (equal (mcli-test--mode-line buf) ":exit [3]"))
    (should (string-match-p "mcli: exit failed with exit code 3" (mcli-test--text buf)))
    ;; `g' runs it again, in the same buffer.
    (with-current-buffer buf
      (should (eq (key-binding "g") #'mcli-rerun))
      (funcall (key-binding "g")))
    (should (equal (buffer-local-value 'mcli-status buf) "running"))
    (mcli-test--wait-end buf)
    (should (equal (mcli-test--mode-line buf) ":exit [3]"))
    (should (= 1 (with-current-buffer buf
                   (how-many "failed with exit code 3" (point-min) (point-max)))))))

(ert-deftest mcli-test-an-unknown-command-is-reported ()
  (let ((buf (mcli-test--run "helo")))
    (mcli-test--wait-end buf)
    (should (equal (buffer-local-value 'mcli-status buf) "error"))
    (should (equal (mcli-test--mode-line buf) ":error"))
    (should (string-match-p "unknown command `helo'; did you mean `hello'"
                            (replace-regexp-in-string "`\\([a-z]+\\)`" "`\\1'"
                                                      (mcli-test--text buf))))))

(ert-deftest mcli-test-c-c-c-k-cancels ()
  (let ((buf (mcli-test--run "longrun")))
    (mcli-test--wait "longrun has started"
                     (lambda () (string-match-p "^started$" (mcli-test--text buf))))
    (let ((pid (mcli-test--longrun-pid)))
      (with-current-buffer buf
        (should (eq (key-binding (kbd "C-c C-k")) #'mcli-cancel))
        (funcall (key-binding (kbd "C-c C-k"))))
      (mcli-test--wait-end buf)
      (should (equal (buffer-local-value 'mcli-status buf) "cancelled"))
      (should (equal (mcli-test--mode-line buf) ":cancelled"))
      (should (string-match-p "mcli: longrun was cancelled" (mcli-test--text buf)))
      (mcli-test--wait-gone pid))))

(ert-deftest mcli-test-disconnecting-ends-the-command-and-says-so ()
  (let ((buf (mcli-test--run "longrun")))
    (mcli-test--wait "longrun has started"
                     (lambda () (string-match-p "^started$" (mcli-test--text buf))))
    (let ((pid (mcli-test--longrun-pid)))
      (mcli-disconnect)
      (mcli-test--wait-end buf)
      (should (equal (buffer-local-value 'mcli-status buf) "error"))
      (should (string-match-p
               "mcli: the connection to the server ended: mcli-client exited with status"
               (mcli-test--text buf)))
      ;; The server saw the hang-up and cancelled the command.
      (mcli-test--wait-gone pid)))
  ;; The next call connects again.
  (should (member "echo" (mcli-command-names))))

(ert-deftest mcli-test-a-missing-client-is-reported ()
  (mcli-disconnect)
  (let* ((mcli-client-program "/nonexistent/mcli-client")
         (err (should-error (mcli-run "echo" nil) :type 'user-error)))
    (should (equal (cadr err)
                   "Cannot find `/nonexistent/mcli-client'; set `mcli-client-program'"))))

(provide 'mcli-test)
;;; mcli-test.el ends here
