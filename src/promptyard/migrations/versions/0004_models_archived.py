"""models can be archived (hidden, history kept) instead of deleted while executions name them

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-04 19:20:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.add_column(sa.Column('archived', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade():
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.drop_column('archived')
