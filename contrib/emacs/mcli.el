;;; mcli.el --- Run mcli commands in a compilation buffer  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 The mcli contributors

;; Author: The mcli contributors
;; Version: 0.1.0
;; Package-Requires: ((emacs "27.1") (jsonrpc "1.0.9"))
;; Keywords: processes, tools
;; SPDX-License-Identifier: MIT OR Apache-2.0

;; This file is not part of GNU Emacs.

;;; Commentary:

;; mcli is a per-user command daemon (`mcli-server') with a thin client
;; (`mcli-client').  This package runs its commands from Emacs:
;;
;;   M-x mcli-run        read a command name (completed from the server's
;;                       `list' method) and its arguments, and run it in
;;                       the current buffer's directory.  Its output streams
;;                       into a `compilation-mode' buffer, "*mcli NAME*".
;;
;; In that buffer, C-c C-k cancels the running command, g runs it again,
;; and the mode line shows ":run" while it runs, then its exit status
;; (":exit [0]", ":exit [3]", ":signal [15]", ":cancelled", ...), as
;; `compile' does.  `next-error' works on file:line references in the
;; output, as in any compilation buffer.
;;
;; Emacs talks JSON-RPC with `jsonrpc.el' to one `mcli-client --stdio'
;; process, which bridges to the shared server (starting it if none runs).
;; Set `mcli-client-program' when `mcli-client' is not on `exec-path'.
;; The protocol is described in docs/protocol.md of the mcli sources.

;;; Code:

(require 'cl-lib)
(require 'compile)
(require 'ansi-color)
(require 'jsonrpc)
(require 'subr-x)

(defgroup mcli nil
  "Run mcli commands through the shared mcli server."
  :group 'tools
  :prefix "mcli-")

(defcustom mcli-client-program "mcli-client"
  "The `mcli-client' program.
A name looked up on the variable `exec-path', or a file name."
  :type 'string)

(defcustom mcli-client-args '("--stdio")
  "Arguments of `mcli-client-program'.
Add \"-s\" and a name before \"--stdio\" to talk to another server."
  :type '(repeat string))

(defcustom mcli-send-environment t
  "Non-nil means a command runs with Emacs's `process-environment'.
When nil, it runs with the environment of the server process, which
may be older than Emacs's own."
  :type 'boolean)

(defcustom mcli-command-timeout nil
  "Seconds a command may run, or nil for the server's own limit."
  :type '(choice (const :tag "The server's limit" nil) number))

(defcustom mcli-list-timeout 10
  "Seconds to wait for the server's list of commands."
  :type 'number)

(defcustom mcli-events-buffer-size 0
  "Characters of JSON-RPC traffic kept in the buffer \"*mcli events*\".
0 keeps none and nil keeps everything.  Every chunk of output is a
message, so logging them costs time and memory: raise it to debug."
  :type '(choice (const :tag "Everything" nil) integer))

(defcustom mcli-finish-functions nil
  "Functions called when a command ends, with its buffer and result.
The result is the `execute' result as a plist (`:status',
`:exit_code', `:signal', ...), or nil when the call failed before
the command ran."
  :type 'hook)

(defvar mcli--connection nil
  "The JSON-RPC connection to `mcli-client --stdio', or nil.")

(defvar mcli--buffers (make-hash-table :test #'eql)
  "The output buffer of each `execute' request in flight, by request id.")

(defvar mcli-command-history nil
  "Command names given to `mcli-run'.")

(defvar mcli-args-history nil
  "Argument lines given to `mcli-run'.")

(defvar-local mcli--request-id nil
  "The id of this buffer's `execute' request while it runs, else nil.")

(defvar-local mcli--run nil
  "The command this buffer runs, as (COMMAND ARGS DIRECTORY).")

(defvar-local mcli-result nil
  "The `execute' result of the command of this buffer, once it has ended.")

(defvar-local mcli-status nil
  "The state of this buffer's command: \"running\" or the result's status.
The result's status is one of \"completed\", \"failed\", \"timed_out\"
and \"cancelled\"; \"error\" means the call failed before it ran.")

;;; The connection

(defun mcli--program ()
  "Return the file name of `mcli-client-program', or signal a user error."
  (or (executable-find mcli-client-program)
      (user-error "Cannot find `%s'; set `mcli-client-program'"
                  mcli-client-program)))

(defun mcli--connect ()
  "Start `mcli-client --stdio' and return a JSON-RPC connection to it."
  (let ((command (cons (mcli--program) mcli-client-args))
        ;; The bridge's own directory does not matter, but it must exist.
        (default-directory (expand-file-name "~/")))
    (apply
     #'make-instance
     'jsonrpc-process-connection
     :name "mcli"
     ;; jsonrpc.el wants the stderr buffer to be named "*NAME stderr*".
     :process (lambda ()
                (make-process :name "mcli"
                              :command command
                              :connection-type 'pipe
                              :coding 'utf-8-emacs-unix
                              :noquery t
                              :stderr (get-buffer-create "*mcli stderr*")))
     :notification-dispatcher #'mcli--notification
     :on-shutdown #'mcli--on-shutdown
     (mcli--events-initargs))))

(defun mcli--events-initargs ()
  "Return the initargs that bound the events buffer, as this jsonrpc.el names them."
  ;; jsonrpc.el 1.0.24 renamed the initarg, and warns about the old one.
  (if (slot-exists-p 'jsonrpc-connection '-events-buffer-config)
      (list :events-buffer-config (list :size mcli-events-buffer-size))
    (list :events-buffer-scrollback-size mcli-events-buffer-size)))

(defun mcli--connection ()
  "Return the live connection to the server, starting it when needed."
  (unless (and mcli--connection (jsonrpc-running-p mcli--connection))
    (setq mcli--connection (mcli--connect)))
  mcli--connection)

(defun mcli--on-shutdown (conn)
  "Forget CONN, whose `mcli-client' process has ended."
  (when (eq conn mcli--connection)
    (setq mcli--connection nil))
  (clrhash mcli--buffers))

(defun mcli-disconnect ()
  "End the connection to the server; commands still running are cancelled."
  (interactive)
  (when (and mcli--connection (jsonrpc-running-p mcli--connection))
    (jsonrpc-shutdown mcli--connection))
  (setq mcli--connection nil))

;;; Command names

(defun mcli--list ()
  "Return the server's commands, as plists with `:name' and `:description'."
  (plist-get (jsonrpc-request (mcli--connection) :list nil
                              :timeout mcli-list-timeout)
             :commands))

(defun mcli-command-names ()
  "Return the names of the commands the server knows, from its `list' method."
  (mapcar (lambda (c) (plist-get c :name)) (mcli--list)))

(defun mcli--completion-table (commands)
  "Return a completion table of COMMANDS, annotated with their descriptions."
  (let ((names (mapcar (lambda (c) (plist-get c :name)) commands)))
    (lambda (string pred action)
      (if (eq action 'metadata)
          `(metadata
            (category . mcli-command)
            (annotation-function
             . ,(lambda (name)
                  (let ((c (cl-find name commands :test #'equal
                                    :key (lambda (c) (plist-get c :name)))))
                    (concat "  " (or (plist-get c :error)
                                     (plist-get c :description)
                                     ""))))))
        (complete-with-action action names string pred)))))

(defun mcli-read-command (&optional prompt)
  "Read a command name with completion from the server's list; PROMPT is shown."
  (completing-read (or prompt "mcli command: ")
                   (mcli--completion-table (mcli--list))
                   nil t nil 'mcli-command-history))

;;; Running a command

(defvar mcli-output-mode-map
  (let ((map (make-sparse-keymap)))
    (set-keymap-parent map compilation-mode-map)
    (define-key map (kbd "C-c C-k") #'mcli-cancel)
    (define-key map "g" #'mcli-rerun)
    map)
  "Keymap of `mcli-output-mode'.")

(define-derived-mode mcli-output-mode compilation-mode "mcli"
  "Major mode of the buffers that show an mcli command's output.
\\{mcli-output-mode-map}"
  (add-hook 'kill-buffer-hook #'mcli--cancel-quietly nil t))

(defun mcli--environment ()
  "Return `process-environment' as a hash table, the first entry of a name winning."
  (let ((env (make-hash-table :test #'equal)))
    (dolist (entry process-environment env)
      (let ((at (string-match "=" entry)))
        (when (and at (> at 0))
          (let ((name (substring entry 0 at)))
            (unless (gethash name env)
              (puthash name (substring entry (1+ at)) env))))))))

(defun mcli--params (command args dir)
  "Return the `execute' params to run COMMAND with ARGS in DIR."
  (append (list :command command :args (vconcat args) :cwd dir)
          (and mcli-send-environment (list :env (mcli--environment)))
          (and mcli-command-timeout (list :timeout mcli-command-timeout))))

(defun mcli--output-buffer (command)
  "Return a buffer for COMMAND's output: its own, unless it is busy."
  (let* ((name (format "*mcli %s*" command))
         (buf (get-buffer name)))
    (if (and buf (buffer-local-value 'mcli--request-id buf))
        (generate-new-buffer name)
      (get-buffer-create name))))

(defun mcli--mode-line (text face)
  "Show TEXT in FACE as this buffer's state in the mode line."
  (setq mode-line-process (list (propertize text 'face face)))
  (force-mode-line-update))

;;;###autoload
(defun mcli-run (command &optional args)
  "Run the mcli COMMAND with the list of strings ARGS.
Interactively, read COMMAND with completion of the names the server
lists, and ARGS as one line split like a shell would (quotes group).
The command runs in `default-directory'; its output streams into a
`mcli-output-mode' buffer, which this returns."
  (interactive
   (let ((command (mcli-read-command)))
     (list command
           (split-string-and-unquote
            (read-string (format "Run %s with arguments: " command)
                         nil 'mcli-args-history)))))
  (when (file-remote-p default-directory)
    (user-error "Commands run on this machine; `%s' is remote"
                default-directory))
  (let ((buf (mcli--output-buffer command)))
    (mcli--start buf command args (expand-file-name default-directory))
    (display-buffer buf)
    buf))

(defun mcli--start (buf command args dir)
  "Run COMMAND with ARGS in DIR, its output going to BUF."
  (let ((conn (mcli--connection)))
    (with-current-buffer buf
      (let ((inhibit-read-only t))
        (erase-buffer))
      (mcli-output-mode)
      (setq default-directory (file-name-as-directory dir)
            mcli--run (list command args dir)
            mcli-result nil
            mcli-status "running")
      (mcli--insert (format "mcli %s in %s\n\n"
                            (mapconcat #'shell-quote-argument
                                       (cons command args) " ")
                            (abbreviate-file-name dir)))
      (mcli--mode-line ":run" 'compilation-mode-line-run)
      ;; `jsonrpc-async-request' does not return the request's id, which
      ;; cancelling and the routing of output need; the function under it
      ;; does, in every jsonrpc.el from Emacs 27 on.
      (let (id)
        (setq id (car (jsonrpc--async-request-1
                       conn :execute (mcli--params command args dir)
                       :timeout nil
                       :success-fn (lambda (result)
                                     (remhash id mcli--buffers)
                                     (mcli--finished buf result))
                       :error-fn (lambda (err)
                                   (remhash id mcli--buffers)
                                   (mcli--failed buf (mcli--error-message
                                                      conn err))))))
        (setq mcli--request-id id)
        (puthash id buf mcli--buffers)))))

(defun mcli-rerun ()
  "Run this buffer's command again, with the same arguments and directory."
  (interactive)
  (unless mcli--run
    (user-error "No command was run in this buffer"))
  (when mcli--request-id
    (user-error "The command is still running; C-c C-k cancels it"))
  (apply #'mcli--start (current-buffer) mcli--run))

(defun mcli-cancel ()
  "Cancel the command running in this buffer."
  (interactive)
  (unless mcli--request-id
    (user-error "No command is running in this buffer"))
  (mcli--cancel-quietly)
  (mcli--insert "mcli: cancelling\n" 'compilation-warning))

(defun mcli--cancel-quietly ()
  "Ask the server to cancel this buffer's request, if one is in flight."
  (when (and mcli--request-id mcli--connection
             (jsonrpc-running-p mcli--connection))
    (jsonrpc-notify mcli--connection :$/cancelRequest
                    (list :id mcli--request-id))))

;;; Output and results

(defun mcli--insert (text &optional face)
  "Append TEXT in FACE to the buffer; windows at its end keep following it."
  (let* ((inhibit-read-only t)
         (end (point-max))
         (windows (cl-remove-if-not (lambda (w) (= (window-point w) end))
                                    (get-buffer-window-list nil nil t)))
         (at-end (= (point) end)))
    (save-excursion
      (goto-char end)
      (insert (if face (propertize text 'font-lock-face face) text)))
    (when at-end (goto-char (point-max)))
    (dolist (w windows) (set-window-point w (point-max)))))

(defun mcli--chunk-text (params)
  "Return the text of the `mcli/output' PARAMS."
  (or (plist-get params :data)
      (decode-coding-string (base64-decode-string (plist-get params :data_b64))
                            'utf-8)))

(defun mcli--notification (_conn method params)
  "Handle the server's notification METHOD with PARAMS."
  (let ((buf (gethash (plist-get params :request_id) mcli--buffers)))
    (when (buffer-live-p buf)
      (with-current-buffer buf
        (pcase method
          ('mcli/output
           (let ((text (ansi-color-apply (mcli--chunk-text params))))
             (if (equal (plist-get params :stream) "stderr")
                 (mcli--insert text 'compilation-error)
               (mcli--insert text))))
          ('mcli/queued
           (mcli--insert (format "mcli: waiting for a free slot, %s ahead\n"
                                 (plist-get params :ahead))
                         'compilation-info)))))))

(defun mcli--describe (result)
  "Return how the command of RESULT ended, and its mode line text and face."
  (let ((status (plist-get result :status))
        (code (plist-get result :exit_code))
        (signal (plist-get result :signal)))
    (cond
     ((equal status "completed")
      (list "completed" (format ":exit [%s]" code) 'compilation-mode-line-exit))
     ((equal status "cancelled")
      (list "was cancelled" ":cancelled" 'compilation-mode-line-fail))
     ((equal status "timed_out")
      (list "timed out" ":timed out" 'compilation-mode-line-fail))
     (signal
      (list (format "was ended by signal %s" signal)
            (format ":signal [%s]" signal) 'compilation-mode-line-fail))
     (code
      (list (format "failed with exit code %s" code)
            (format ":exit [%s]" code) 'compilation-mode-line-fail))
     (t (list (format "ended: %s" status) (format ":%s" status)
              'compilation-mode-line-fail)))))

(defun mcli--finished (buf result)
  "Show in BUF that its command ended with RESULT."
  (when (buffer-live-p buf)
    (with-current-buffer buf
      (pcase-let ((`(,how ,mode-line ,face) (mcli--describe result)))
        (setq mcli--request-id nil
              mcli-result result
              mcli-status (plist-get result :status))
        (mcli--insert (format "\nmcli: %s %s%s after %.2f s\n"
                              (car mcli--run) how
                              (if (eq (plist-get result :cached) t)
                                  " (cached)" "")
                              (/ (or (plist-get result :duration_ms) 0) 1000.0))
                      (if (equal mcli-status "completed")
                          'compilation-info 'compilation-error))
        (mcli--mode-line mode-line face))
      (run-hook-with-args 'mcli-finish-functions buf result))))

(defun mcli--error-message (conn err)
  "Return what to say about the JSON-RPC error ERR of a call on CONN."
  (let ((process (jsonrpc--process conn)))
    (if (process-live-p process)
        (plist-get err :message)
      ;; jsonrpc.el fails the calls in flight when the process ends.
      (format "the connection to the server ended: %s exited with status %s%s"
              (file-name-nondirectory mcli-client-program)
              (process-exit-status process)
              (let ((line (mcli--last-stderr-line conn)))
                (if line (concat ": " line) ""))))))

(defun mcli--last-stderr-line (conn)
  "Return the last line that the client of CONN wrote to its stderr, or nil."
  (let ((buf (and (fboundp 'jsonrpc-stderr-buffer) (jsonrpc-stderr-buffer conn))))
    (when (buffer-live-p buf)
      (with-current-buffer buf
        (let ((text (string-trim (buffer-substring-no-properties
                                  (point-min) (point-max)))))
          (unless (string-empty-p text)
            (car (last (split-string text "\n")))))))))

(defun mcli--failed (buf message)
  "Show in BUF that its `execute' call failed, saying MESSAGE."
  (when (buffer-live-p buf)
    (with-current-buffer buf
      (setq mcli--request-id nil
            mcli-result nil
            mcli-status "error")
      (mcli--insert (format "mcli: %s\n" message)
                    'compilation-error)
      (mcli--mode-line ":error" 'compilation-mode-line-fail)
      (run-hook-with-args 'mcli-finish-functions buf nil))))

(provide 'mcli)
;;; mcli.el ends here
