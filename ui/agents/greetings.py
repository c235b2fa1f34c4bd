"""The alternate greetings as a list: one box per greeting, with move up, move down, remove
and "Add greeting".

A greeting is often several paragraphs long, so a single textarea with separator lines was
easy to break. The list runs in the browser (a ``gr.HTML`` whose value is the list of
greetings): adding, removing and reordering need no round trip, and the list the server gets
with Save is exactly what the boxes show. When a handler sends a new list (an agent was
loaded) the boxes are rebuilt; the user's own typing never rebuilds them, so focus stays.
"""

from __future__ import annotations

import gradio as gr

TEMPLATE = """
<div class="anima-greetings">
  <div class="anima-greetings-head">
    <span class="anima-greetings-title">Alternate greetings</span>
    <span class="anima-greetings-hint">Swipe choices for the first message; the order is
    the order a chat offers them.</span>
  </div>
  <ol class="anima-greetings-items"></ol>
  <p class="anima-greetings-empty">No alternate greetings yet.</p>
  <button type="button" class="anima-greetings-add">+ Add greeting</button>
</div>
"""

# ``element``, ``props`` and ``watch`` are given by gr.HTML. ``window.animaEditor`` (guard.py)
# hears about structural edits so the unsaved-change warning covers them.
SCRIPT = r"""
const items = element.querySelector('.anima-greetings-items');
const empty = element.querySelector('.anima-greetings-empty');
const read = () => Array.from(items.querySelectorAll('textarea')).map((t) => t.value);
const touched = () => window.animaEditor && window.animaEditor.markDirty();
const commit = () => { props.value = read(); };
const ACTIONS = [['up', '↑', 'Move up'], ['down', '↓', 'Move down'], ['remove', '✕', 'Remove']];

function act(list, index, action) {
  if (action === 'remove') { list.splice(index, 1); return list; }
  const other = action === 'up' ? index - 1 : index + 1;
  if (other < 0 || other >= list.length) return null;
  [list[index], list[other]] = [list[other], list[index]];
  return list;
}

function build(list) {
  items.replaceChildren();
  list.forEach((text, index) => {
    const row = document.createElement('li');
    row.className = 'anima-greeting';
    const box = document.createElement('textarea');
    box.value = text;
    box.rows = Math.min(8, Math.max(2, text.split('\n').length));
    box.setAttribute('aria-label', 'Greeting ' + (index + 1));
    box.addEventListener('input', commit);
    row.appendChild(box);
    const tools = document.createElement('div');
    tools.className = 'anima-greeting-tools';
    for (const [action, icon, title] of ACTIONS) {
      const button = document.createElement('button');
      button.type = 'button';
      button.textContent = icon;
      button.title = title;
      button.setAttribute('aria-label', title + ' greeting ' + (index + 1));
      button.dataset.action = action;
      button.disabled = (action === 'up' && index === 0) ||
        (action === 'down' && index === list.length - 1);
      button.addEventListener('click', () => {
        const next = act(read(), index, action);
        if (next) { build(next); props.value = next; touched(); }
      });
      tools.appendChild(button);
    }
    row.appendChild(tools);
    items.appendChild(row);
  });
  empty.style.display = list.length ? 'none' : '';
}

element.querySelector('.anima-greetings-add').addEventListener('click', () => {
  const next = read().concat(['']);
  build(next);
  props.value = next;
  touched();
  const boxes = items.querySelectorAll('textarea');
  boxes[boxes.length - 1].focus();
});
build(props.value || []);
watch('value', () => {
  const incoming = props.value || [];
  if (JSON.stringify(incoming) !== JSON.stringify(read())) build(incoming);
});
"""


def greetings_list(elem_id: str = "agent-alt-greetings") -> gr.HTML:
    """The list editor; its value is the list of greetings (``list[str]``)."""
    return gr.HTML(
        [],
        html_template=TEMPLATE,
        js_on_load=SCRIPT,
        elem_id=elem_id,
        elem_classes=["anima-track"],
    )
